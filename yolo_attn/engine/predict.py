"""``yolo-attn predict``: detection on images, as YOLOv5's ``detect.py`` (letterbox, NMS, boxes mapped back)."""

from __future__ import annotations

import argparse
import glob
import json
import math
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np
import torch

from yolo_attn.checkpoint import load_model
from yolo_attn.data.letterbox import letterbox
from yolo_attn.errors import UserError
from yolo_attn.nn.model import DetectionModel
from yolo_attn.utils.annotate import draw_detections
from yolo_attn.utils.boxes import scale_boxes, xyxy2xywh
from yolo_attn.utils.nms import non_max_suppression
from yolo_attn.utils.paths import add_run_dir_arguments, increment_path

IMAGE_SUFFIXES = frozenset({".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp", ".pfm"})


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


def model_stride(model: DetectionModel) -> int:
    """The largest stride of the model (the letterbox pads to a multiple of it)."""
    return max(int(model.stride.max()), 32)


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
) -> list[torch.Tensor]:
    """Detect objects in BGR images; per image an ``(n, 6)`` tensor ``x1, y1, x2, y2, score, class``.

    Boxes are in the original image's pixels (rounded, as YOLOv5's detect), best score first.
    ``img_size`` is rounded up to a multiple of the model's stride.
    """
    device = next(model.parameters()).device
    stride = model_stride(model)
    img_size = math.ceil(img_size / stride) * stride
    results = []
    for image in images:
        x = preprocess(image, img_size, stride, device)
        output = model(x)
        decoded = output[0] if isinstance(output, (tuple, list)) else output
        det = non_max_suppression(decoded, conf_thres, iou_thres, classes, agnostic, multi_label=False,
                                  max_det=max_det)[0]
        det[:, :4] = scale_boxes(x.shape[2:], det[:, :4], image.shape[:2]).round()
        results.append(det.cpu())
    return results


def yolo_label_lines(det: torch.Tensor, shape: tuple[int, int], with_conf: bool) -> list[str]:
    """YOLO-format lines ``cls xc yc w h [conf]``, coordinates normalised by the image (h, w)."""
    h, w = shape
    xywh = xyxy2xywh(det[:, :4]) / torch.tensor([w, h, w, h], dtype=det.dtype)
    lines = []
    for (xc, yc, bw, bh), score, cls in zip(xywh.tolist(), det[:, 4].tolist(), det[:, 5].tolist()):
        values = [int(cls), xc, yc, bw, bh] + ([score] if with_conf else [])
        lines.append(" ".join(f"{v:g}" for v in values))
    return lines


def coco_records(det: torch.Tensor, image_path: Path, names: list[str]) -> list[dict]:
    """COCO-style result dicts: ``bbox`` is [x, y, w, h] from the top-left corner; ids are class indices."""
    image_id = int(image_path.stem) if image_path.stem.isnumeric() else image_path.stem
    records = []
    for x1, y1, x2, y2, score, cls in det.tolist():
        records.append({
            "image_id": image_id,
            "category_id": int(cls),
            "category_name": names[int(cls)],
            "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
            "score": round(score, 5),
        })
    return records


def read_images(paths: Iterable[Path]) -> Iterator[tuple[Path, np.ndarray]]:
    """Yield (path, BGR image); an unreadable or corrupt file is skipped with a warning naming it."""
    for path in paths:
        image = cv2.imread(str(path))
        if image is None:
            print(f"warning: skipping {path}: not a readable image", file=sys.stderr)
            continue
        yield path, image


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", required=True, help="checkpoint (ours or an upstream YOLOv5/YOLOv7 .pt)")
    p.add_argument("--source", required=True, help="image file, directory or glob")
    p.add_argument("--img", "--img-size", dest="img", type=int, default=640, help="inference size (long side)")
    p.add_argument("--conf", type=float, default=0.25, help="confidence threshold")
    p.add_argument("--iou", type=float, default=0.45, help="NMS IoU threshold")
    p.add_argument("--max-det", type=int, default=1000, help="maximum detections per image")
    p.add_argument("--device", default="cpu", help="cpu, 0, 1, ... or cuda:N")
    p.add_argument("--classes", type=int, nargs="+", help="keep only these class indices")
    p.add_argument("--agnostic-nms", action="store_true", help="class-agnostic NMS")
    p.add_argument("--save-txt", action="store_true", help="write YOLO-format labels to <save dir>/labels/")
    p.add_argument("--save-conf", action="store_true", help="append the confidence to --save-txt lines")
    p.add_argument("--save-json", action="store_true", help="write COCO-style predictions.json")
    add_run_dir_arguments(p, "runs/predict")
    p.add_argument("--json", action="store_true", help="end with one JSON line of the results")


def run_cli(args: argparse.Namespace) -> int:
    if args.img < 1:
        raise UserError(f"--img {args.img}: must be a positive image size")
    for option, value in (("--conf", args.conf), ("--iou", args.iou)):
        if not 0 <= value <= 1:
            raise UserError(f"{option} {value}: must be between 0 and 1")
    paths = image_paths(args.source)
    loaded = load_model(args.weights, device=args.device, fuse=True)
    model, names = loaded.model, loaded.names
    save_dir = increment_path(Path(args.project) / args.name, args.exist_ok)
    save_dir.mkdir(parents=True, exist_ok=True)
    if args.save_txt:
        (save_dir / "labels").mkdir(exist_ok=True)
    summary: dict[str, list[dict]] = {}
    coco: list[dict] = []
    for path, image in read_images(paths):
        det = predict(model, [image], args.img, args.conf, args.iou, args.max_det, args.classes, args.agnostic_nms)[0]
        cv2.imwrite(str(save_dir / path.name), draw_detections(image, det, names))
        if args.save_txt:
            lines = yolo_label_lines(det, image.shape[:2], args.save_conf)
            (save_dir / "labels" / f"{path.stem}.txt").write_text("".join(f"{line}\n" for line in lines))
        if args.save_json:
            coco.extend(coco_records(det, path, names))
        counts = Counter(names[int(c)] for c in det[:, 5].tolist())
        found = ", ".join(f"{n} {name}" for name, n in counts.items()) or "no detections"
        print(f"{path}: {image.shape[0]}x{image.shape[1]}: {found}")
        summary[str(path)] = [
            {"class": int(c), "name": names[int(c)], "score": round(s, 5), "box": [round(v, 1) for v in box]}
            for *box, s, c in det.tolist()
        ]
    if args.save_json:
        (save_dir / "predictions.json").write_text(json.dumps(coco))
    print(f"results saved to {save_dir}")
    if args.json:
        print(json.dumps({"save_dir": str(save_dir), "images": summary}))
    return 0
