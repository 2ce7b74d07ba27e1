"""Non-maximum suppression on decoded YOLO outputs, with torchvision's nms."""

from __future__ import annotations

import torch
from torchvision.ops import nms

from yolo_attn.utils.boxes import xywh2xyxy

MAX_BOXES_INTO_NMS = 30_000


def non_max_suppression(
    prediction: torch.Tensor,
    conf_thres: float = 0.25,
    iou_thres: float = 0.45,
    classes: list[int] | None = None,
    agnostic: bool = False,
    multi_label: bool = False,
    max_det: int = 300,
) -> list[torch.Tensor]:
    """Filter ``(batch, n, 5 + nc)`` decoded predictions (cx, cy, w, h, obj, cls...) per image.

    Score = objectness x class probability. ``multi_label`` keeps every class above ``conf_thres``
    for a box (YOLOv5's val), otherwise only the best class (predict). Returns, per image, an
    ``(n, 6)`` tensor of ``x1, y1, x2, y2, score, class``, best first.
    """
    if not 0 <= conf_thres <= 1 or not 0 <= iou_thres <= 1:
        raise ValueError(f"conf_thres and iou_thres must be in [0, 1], got {conf_thres}, {iou_thres}")
    nc = prediction.shape[2] - 5
    multi_label &= nc > 1
    output = [torch.zeros((0, 6), device=prediction.device)] * prediction.shape[0]
    candidates = prediction[..., 4] > conf_thres
    for xi, x in enumerate(prediction):
        x = x[candidates[xi]]
        if not x.shape[0]:
            continue
        scores = x[:, 5:] * x[:, 4:5]
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
