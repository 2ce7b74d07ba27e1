"""Non-maximum suppression on decoded YOLO outputs, with torchvision's compiled nms; end-to-end heads' outputs,
which need none, filtered to the same final detections."""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
from pathlib import Path

import torch

from yolo_attn.utils.boxes import xywh2xyxy

MAX_BOXES_INTO_NMS = 30_000


@functools.cache
def _load_torchvision_ops() -> None:
    """Register torchvision's compiled operators without importing its Python package, whose import (it
    pulls in torch._dynamo) costs ~1.7 s and ~170 MB; falls back to the import."""
    if hasattr(torch.ops.torchvision, "nms"):
        return
    spec = importlib.util.find_spec("torchvision")
    assert spec is not None and spec.submodule_search_locations  # a runtime dependency, installed as a package
    folder = Path(spec.submodule_search_locations[0])
    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    libraries = [folder / f"{name}{suffix}" for name in ("_C_stable", "_C") for suffix in suffixes]
    try:
        torch.ops.load_library(next(str(p) for p in libraries if p.is_file()))
    except (StopIteration, OSError):
        import torchvision.ops  # noqa: F401  (its own loader: DLL folders on Windows)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """torchvision.ops.nms: indices of the boxes kept, by decreasing score."""
    _load_torchvision_ops()
    return torch.ops.torchvision.nms(boxes, scores, iou_threshold)


def non_max_suppression(
    prediction: torch.Tensor,
    conf_thres: float = 0.25,
    iou_thres: float = 0.45,
    classes: list[int] | None = None,
    agnostic: bool = False,
    multi_label: bool = False,
    max_det: int = 300,
    objectness: bool = True,
) -> list[torch.Tensor]:
    """Filter ``(batch, n, 5 + nc)`` decoded predictions (cx, cy, w, h, obj, cls...) per image.

    Score = objectness x class probability. ``objectness=False``: rows are ``(batch, n, 4 + nc)``
    (cx, cy, w, h, cls...), as anchor-free heads decode them, and the score is the class probability
    alone (Ultralytics' YOLOv8/11/12). ``multi_label`` keeps every class above ``conf_thres``
    for a box (YOLOv5's val), otherwise only the best class (predict). Returns, per image, an
    ``(n, 6)`` tensor of ``x1, y1, x2, y2, score, class``, best first.
    """
    if not 0 <= conf_thres <= 1 or not 0 <= iou_thres <= 1:
        raise ValueError(f"conf_thres and iou_thres must be in [0, 1], got {conf_thres}, {iou_thres}")
    nc = prediction.shape[2] - (5 if objectness else 4)
    multi_label &= nc > 1
    output = [torch.zeros((0, 6), device=prediction.device)] * prediction.shape[0]
    candidates = (prediction[..., 4] if objectness else prediction[..., 4:].amax(-1)) > conf_thres
    for xi, x in enumerate(prediction):
        x = x[candidates[xi]]
        if not x.shape[0]:
            continue
        scores = x[:, 5:] * x[:, 4:5] if objectness else x[:, 4:]
        box = xywh2xyxy(x[:, :4])
        if multi_label:
            i, j = (scores > conf_thres).nonzero(as_tuple=False).T
            x = torch.cat((box[i], scores[i, j, None], j[:, None].float()), 1)
        else:
            conf, j = scores.max(1, keepdim=True)
            x = torch.cat((box, conf, j.float()), 1)[conf.view(-1) > conf_thres]
        if classes is not None:
            x = x[(x[:, 5:6] == torch.tensor(classes, device=x.device)).any(1)]
        if not x.shape[0]:
            continue
        x = x[x[:, 4].argsort(descending=True)[:MAX_BOXES_INTO_NMS]]
        # per class in one call: each class's boxes shifted beyond all others (torchvision's batched_nms loops over
        # the classes above 1000 boxes)
        offsets = 0 if agnostic else x[:, 5:6] * (x[:, :4].max() + 1)
        keep = nms(x[:, :4] + offsets, x[:, 4], iou_thres)
        output[xi] = x[keep[:max_det]]
    return output


def end_to_end_detections(
    prediction: torch.Tensor,
    conf_thres: float = 0.25,
    classes: list[int] | None = None,
    max_det: int = 300,
) -> list[torch.Tensor]:
    """The final detections of an end-to-end head (contract ``end_to_end``), which already chose them without NMS:
    per image, the rows of its ``(batch, k, 6)`` output (x1, y1, x2, y2, score, class, best first) scoring above
    ``conf_thres``, of ``classes`` when given, the first ``max_det`` of them. Same output as
    :func:`non_max_suppression`."""
    if not 0 <= conf_thres <= 1:
        raise ValueError(f"conf_thres must be in [0, 1], got {conf_thres}")
    keep = prediction[..., 4] > conf_thres
    if classes is not None:
        keep &= (prediction[..., 5:6] == torch.tensor(classes, device=prediction.device)).any(-1)
    return [rows[mask][:max_det].float() for rows, mask in zip(prediction, keep, strict=True)]
