"""Box format conversion and mapping between letterboxed and original image coordinates."""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

# Box arrays of either library; a function returns the kind it was given.
Boxes = TypeVar("Boxes", torch.Tensor, np.ndarray)


def xywh2xyxy(x: Boxes) -> Boxes:
    """(cx, cy, w, h) -> (x1, y1, x2, y2)."""
    y = x.clone() if isinstance(x, torch.Tensor) else np.copy(x)
    y[..., 0] = x[..., 0] - x[..., 2] / 2
    y[..., 1] = x[..., 1] - x[..., 3] / 2
    y[..., 2] = x[..., 0] + x[..., 2] / 2
    y[..., 3] = x[..., 1] + x[..., 3] / 2
    return y


def xyxy2xywh(x: Boxes) -> Boxes:
    """(x1, y1, x2, y2) -> (cx, cy, w, h)."""
    y = x.clone() if isinstance(x, torch.Tensor) else np.copy(x)
    y[..., 0] = (x[..., 0] + x[..., 2]) / 2
    y[..., 1] = (x[..., 1] + x[..., 3]) / 2
    y[..., 2] = x[..., 2] - x[..., 0]
    y[..., 3] = x[..., 3] - x[..., 1]
    return y


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """(n, m) IoU of xyxy boxes, computed as torchvision.ops.box_iou does (without importing torchvision)."""
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    lt = torch.max(boxes1[:, None, :2], boxes2[:, :2])
    rb = torch.min(boxes1[:, None, 2:], boxes2[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[:, :, 0] * wh[:, :, 1]
    return inter / (area1[:, None] + area2 - inter)


def clip_boxes(boxes: Boxes, shape: tuple[int, ...]) -> Boxes:
    """Clip xyxy boxes in place to an image of ``shape`` (h, w)."""
    h, w = shape[:2]
    if isinstance(boxes, torch.Tensor):
        boxes[..., 0].clamp_(0, w)
        boxes[..., 1].clamp_(0, h)
        boxes[..., 2].clamp_(0, w)
        boxes[..., 3].clamp_(0, h)
    else:
        boxes[..., [0, 2]] = boxes[..., [0, 2]].clip(0, w)
        boxes[..., [1, 3]] = boxes[..., [1, 3]].clip(0, h)
    return boxes


def scale_boxes(
    letterboxed_shape: tuple[int, ...],
    boxes: Boxes,
    original_shape: tuple[int, ...],
    ratio_pad: tuple[tuple[float, float], tuple[float, float]] | None = None,
) -> Boxes:
    """Map xyxy boxes (in place) from a letterboxed image back to the original image, then clip.

    ``ratio_pad`` = ((gain_h, gain_w), (pad_w, pad_h)) as the letterbox returned it; when None
    the gain and centred padding are recomputed from the two shapes.
    """
    if ratio_pad is None:
        gain = min(letterboxed_shape[0] / original_shape[0], letterboxed_shape[1] / original_shape[1])
        pad = (
            (letterboxed_shape[1] - original_shape[1] * gain) / 2,
            (letterboxed_shape[0] - original_shape[0] * gain) / 2,
        )
    else:
        gain, pad = ratio_pad[0][0], ratio_pad[1]
    boxes[..., [0, 2]] -= pad[0]
    boxes[..., [1, 3]] -= pad[1]
    boxes[..., :4] /= gain
    return clip_boxes(boxes, original_shape)
