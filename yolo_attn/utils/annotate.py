"""Drawing detections on images (boxes with class-name and score labels) with OpenCV."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import cv2
import numpy as np
import torch

_GOLDEN_RATIO_CONJUGATE = 0.618033988749895


def class_color(index: int) -> tuple[int, int, int]:
    """A distinct, stable BGR colour per class (hues spaced by the golden ratio)."""
    hue = (index * _GOLDEN_RATIO_CONJUGATE) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


def text_color(background: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black on light BGR backgrounds, white on dark ones (ITU-R BT.601 luma)."""
    blue, green, red = background
    return (0, 0, 0) if 0.299 * red + 0.587 * green + 0.114 * blue > 150 else (255, 255, 255)


def draw_detections(
    image: np.ndarray, detections: torch.Tensor | np.ndarray, names: Sequence[str], line_width: int | None = None,
    *, hide_labels: bool = False, hide_conf: bool = False,
) -> np.ndarray:
    """Return a copy of ``image`` (BGR) with ``detections`` (n, 6: x1, y1, x2, y2, score, class) drawn, each
    labelled with its class name and score (``hide_conf``: the name only; ``hide_labels``: boxes only)."""
    canvas = np.ascontiguousarray(image.copy())
    lw = line_width or max(round(sum(canvas.shape[:2]) / 2 * 0.003), 2)
    font_scale = lw / 3
    thickness = max(lw - 1, 1)
    rows = detections.tolist() if len(detections) else []
    for x1, y1, x2, y2, score, cls in rows:
        cls = int(cls)
        color = class_color(cls)
        p1, p2 = (int(x1), int(y1)), (int(x2), int(y2))
        cv2.rectangle(canvas, p1, p2, color, thickness=lw, lineType=cv2.LINE_AA)
        if hide_labels:
            continue
        name = names[cls] if 0 <= cls < len(names) else str(cls)
        label = name if hide_conf else f"{name} {score:.2f}"
        (tw, th), baseline = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        left = max(min(p1[0], canvas.shape[1] - tw - 2), 0)  # keep the label inside the image
        top = p1[1] - th - baseline - 3 if p1[1] - th - baseline - 3 >= 0 else p1[1]
        cv2.rectangle(canvas, (left, top), (left + tw + 2, top + th + baseline + 3), color, -1, cv2.LINE_AA)
        cv2.putText(canvas, label, (left + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale, text_color(color),
                    thickness, cv2.LINE_AA)
    return canvas
