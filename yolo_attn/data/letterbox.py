"""Letterbox resizing: scale to fit, pad to the target (or to the stride) with grey."""

from __future__ import annotations

import cv2
import numpy as np

PAD_COLOR = (114, 114, 114)


def letterbox(
    image: np.ndarray,
    new_shape: int | tuple[int, int] = 640,
    color: tuple[int, int, int] = PAD_COLOR,
    auto: bool = True,
    scale_fill: bool = False,
    scale_up: bool = True,
    stride: int = 32,
) -> tuple[np.ndarray, tuple[float, float], tuple[float, float]]:
    """Resize ``image`` (HWC) to fit ``new_shape`` (h, w) keeping its aspect ratio, then pad.

    ``auto`` pads only to the next multiple of ``stride`` (minimal rectangle, as YOLOv5's detect);
    ``scale_fill`` stretches without padding; ``scale_up=False`` never enlarges.
    Returns the image, the (w, h) scale ratios and the (w, h) padding on each side.
    """
    shape = image.shape[:2]
    if isinstance(new_shape, int):
        new_shape = (new_shape, new_shape)
    r = min(new_shape[0] / shape[0], new_shape[1] / shape[1])
    if not scale_up:
        r = min(r, 1.0)
    ratio = (r, r)
    new_unpad = (int(round(shape[1] * r)), int(round(shape[0] * r)))
    dw: float
    dh: float
    dw, dh = new_shape[1] - new_unpad[0], new_shape[0] - new_unpad[1]
    if auto:
        dw, dh = np.mod(dw, stride), np.mod(dh, stride)
    elif scale_fill:
        dw, dh = 0.0, 0.0
        new_unpad = (new_shape[1], new_shape[0])
        ratio = (new_shape[1] / shape[1], new_shape[0] / shape[0])
    dw /= 2
    dh /= 2
    if shape[::-1] != new_unpad:
        image = cv2.resize(image, new_unpad, interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    image = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=color)
    return image, ratio, (dw, dh)
