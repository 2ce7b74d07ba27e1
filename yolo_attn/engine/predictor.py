"""Prediction on images, as YOLOv5's ``detect.py``: letterbox, NMS (none for end-to-end heads), boxes mapped back
(``yolo-attn predict``)."""

from __future__ import annotations

import glob
import logging
import math
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from yolo_attn.data.coco_json import detections_to_json
from yolo_attn.data.images import IMAGE_SUFFIXES, ImageSkipped, read_image
from yolo_attn.data.letterbox import letterbox
from yolo_attn.errors import UserError
from yolo_attn.nn.heads import configure_end_to_end, has_objectness
from yolo_attn.nn.model import DetectionModel, max_stride, model_device
from yolo_attn.utils.boxes import scale_boxes, xyxy2xywh
from yolo_attn.utils.nms import end_to_end_detections, non_max_suppression

LOGGER = logging.getLogger(__name__)

END_TO_END_MIN_CANDIDATES = 300  # Ultralytics' predictor: an end-to-end head keeps at least this many
CROP_GAIN, CROP_PAD = 1.02, 10  # YOLOv5's save_one_box: a crop is its box grown by 2 % plus 10 pixels


def image_paths(source: str | Path) -> list[Path]:
    """Image files named by ``source``: a file, a directory (sorted, not recursive) or a glob pattern."""
    text = str(source)
    if any(c in text for c in "*?["):
        paths = [Path(p) for p in sorted(glob.glob(text, recursive=True))]
    elif Path(text).is_dir():
        paths = sorted(Path(text).iterdir())
    elif Path(text).is_file():
        return [Path(text)]
    else:
        raise UserError(f"--source {text}: no such file, directory or matching glob")
    images = [p for p in paths if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        raise UserError(f"--source {text}: no images found (supported: {', '.join(sorted(IMAGE_SUFFIXES))})")
    return images


def preprocess(image: np.ndarray, img_size: int, stride: int, device: torch.device) -> torch.Tensor:
    """BGR HWC uint8 -> letterboxed (auto: minimal padding to ``stride``) RGB 1xCxHxW float in [0, 1]."""
    boxed = letterbox(image, img_size, stride=stride, auto=True)[0]
    chw = np.ascontiguousarray(boxed.transpose(2, 0, 1)[::-1])
    return torch.from_numpy(chw).to(device).float().div_(255).unsqueeze(0)


@torch.no_grad()
def predict(
    model: DetectionModel,
    images: Iterable[np.ndarray],
    img_size: int = 640,
    conf_thres: float = 0.25,
    iou_thres: float = 0.45,
    max_det: int = 1000,
    classes: list[int] | None = None,
    agnostic: bool = False,
    nms_free: bool = False,
) -> list[torch.Tensor]:
    """Detect objects in BGR images; per image an ``(n, 6)`` tensor ``x1, y1, x2, y2, score, class``.

    Boxes are in the original image's pixels (rounded, as YOLOv5's detect), best score first.
    ``img_size`` is rounded up to a multiple of the model's stride. With ``nms_free``, a head whose contract is
    ``end_to_end`` chooses its detections itself (at least 300 candidates, so that ``classes`` still leaves
    ``max_det``): no NMS then, and ``iou_thres`` is not used.
    """
    device = model_device(model)
    stride = max_stride(model)
    img_size = math.ceil(img_size / stride) * stride
    end_to_end = configure_end_to_end(model, max(max_det, END_TO_END_MIN_CANDIDATES), agnostic, nms_free)
    results = []
    for image in images:
        x = preprocess(image, img_size, stride, device)
        output = model(x)
        decoded = output[0] if isinstance(output, (tuple, list)) else output
        if end_to_end:
            det = end_to_end_detections(decoded, conf_thres, classes, max_det)[0]
        else:
            det = non_max_suppression(decoded, conf_thres, iou_thres, classes, agnostic, multi_label=False,
                                      max_det=max_det, objectness=has_objectness(model))[0]
        det[:, :4] = scale_boxes(x.shape[2:], det[:, :4], image.shape[:2]).round()
        results.append(det.cpu())
    return results


def yolo_label_lines(det: torch.Tensor, shape: tuple[int, int], with_conf: bool) -> list[str]:
    """YOLO-format lines ``cls xc yc w h [conf]``, coordinates normalised by the image (h, w)."""
    h, w = shape
    xywh = xyxy2xywh(det[:, :4]) / torch.tensor([w, h, w, h], dtype=det.dtype)
    lines = []
    for (xc, yc, bw, bh), score, cls in zip(xywh.tolist(), det[:, 4].tolist(), det[:, 5].tolist(), strict=True):
        values = [int(cls), xc, yc, bw, bh] + ([score] if with_conf else [])
        lines.append(" ".join(f"{v:g}" for v in values))
    return lines


def coco_records(det: torch.Tensor, image_path: Path, names: list[str]) -> list[dict]:
    """COCO-style result dicts (the one writer of :mod:`yolo_attn.data.coco_json`): ``category_id`` is the class
    index, the category id a YOLO-layout dataset's json uses; ``category_name`` names it."""
    image_id = int(image_path.stem) if image_path.stem.isnumeric() else image_path.stem
    records = detections_to_json(det.numpy(), image_id, list(range(len(names))))
    return [{**r, "category_name": names[r["category_id"]]} for r in records]


def box_crops(image: np.ndarray, det: torch.Tensor) -> list[tuple[int, np.ndarray]]:
    """(class, BGR crop) of every detection in ``det`` (n, 6: x1, y1, x2, y2, score, class), the box grown about
    its centre as YOLOv5's ``--save-crop`` grows it and clipped to the image."""
    h, w = image.shape[:2]
    crops = []
    for x1, y1, x2, y2, _, cls in det.tolist():
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        half_w, half_h = ((x2 - x1) * CROP_GAIN + CROP_PAD) / 2, ((y2 - y1) * CROP_GAIN + CROP_PAD) / 2
        left, top = max(int(cx - half_w), 0), max(int(cy - half_h), 0)
        right, bottom = min(int(cx + half_w), w), min(int(cy + half_h), h)
        crops.append((int(cls), image[top:bottom, left:right]))
    return crops


def read_images(paths: Iterable[Path]) -> Iterator[tuple[Path, np.ndarray]]:
    """Yield (path, BGR image); an unreadable or corrupt file is skipped with a warning naming it."""
    for path in paths:
        try:
            image = read_image(str(path))
        except ImageSkipped as e:
            LOGGER.warning(f"skipping {path}: {e}")
            continue
        yield path, image
