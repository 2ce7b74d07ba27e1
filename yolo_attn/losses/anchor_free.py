"""Ultralytics' anchor-free detection loss (YOLOv8, Jocher et al. 2023; ultralytics/ultralytics ``utils/loss.py``
``v8DetectionLoss`` with ``utils/tal.py``'s assigner), for :class:`~yolo_attn.nn.heads.anchor_free.AnchorFreeDetect`.

Assignment is task-aligned (TOOD, Feng et al., ICCV 2021, arXiv:2108.07755): for each ground truth, among the anchor
points inside it (boxes narrower or shorter than the middle stride count as that wide there, as Ultralytics 8.4
does), the ``top-k = 10`` with the largest alignment ``score^0.5 * CIoU^6`` are positives; a point claimed by several
ground truths goes to the one it overlaps most. Class targets are the one-hot labels scaled by the normalised
alignment. Losses: BCE on classes, 1 - CIoU (Zheng et al., AAAI 2020) and Distribution Focal Loss (Li et al.,
"Generalized Focal Loss", NeurIPS 2020, arXiv:2006.04388) on the positives' boxes, each weighted by the target
score and divided by the sum of target scores; gains box 7.5, cls 0.5, dfl 1.5.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from yolo_attn.losses.registry import register_loss
from yolo_attn.losses.yolov5 import bbox_ciou
from yolo_attn.nn.heads.anchor_free import AnchorFreeDetect, anchor_points
from yolo_attn.utils.boxes import xywh2xyxy, xyxy2xywh

TOP_K, ALPHA, BETA = 10, 0.5, 6.0
DEFAULT_GAINS = {"box": 7.5, "cls": 0.5, "dfl": 1.5}
EPS = 1e-9


def ciou_xyxy(box1: torch.Tensor, box2: torch.Tensor) -> torch.Tensor:
    """Complete IoU of paired (x1, y1, x2, y2) boxes ``(n, 4)`` -> ``(n,)``."""
    return bbox_ciou(xyxy2xywh(box1), xyxy2xywh(box2))


def points_inside(points: torch.Tensor, gt_boxes: torch.Tensor, gt_mask: torch.Tensor, min_side: float):
    """``(b, m, n)``: anchor point ``n`` (pixels, ``(n, 2)``) lies strictly inside ground truth ``m``, whose sides
    are first widened to at least ``min_side`` around its centre."""
    xywh = xyxy2xywh(gt_boxes)
    narrow = (xywh[..., 2:] < min_side) & gt_mask
    xywh[..., 2:] = torch.where(narrow, torch.full_like(xywh[..., 2:], min_side), xywh[..., 2:])
    left_top, right_bottom = xywh2xyxy(xywh).unsqueeze(2).chunk(2, 3)
    return ((points - left_top).amin(-1) > EPS) & ((right_bottom - points).amin(-1) > EPS)


def alignment(scores, boxes, gt_labels, gt_boxes, candidates):
    """Alignment ``score^alpha * CIoU^beta`` and CIoU (clamped at 0) of every candidate pair, zeros elsewhere."""
    b_idx, g_idx, a_idx = candidates.nonzero(as_tuple=True)
    class_scores = scores[b_idx, a_idx, gt_labels[b_idx, g_idx, 0].long()]
    iou = ciou_xyxy(gt_boxes[b_idx, g_idx], boxes[b_idx, a_idx]).clamp(0)
    overlaps = torch.zeros(candidates.shape, dtype=boxes.dtype, device=boxes.device)
    metric = torch.zeros(candidates.shape, dtype=scores.dtype, device=scores.device)
    overlaps[b_idx, g_idx, a_idx] = iou
    metric[b_idx, g_idx, a_idx] = class_scores.pow(ALPHA) * iou.pow(BETA)
    return metric, overlaps


def top_k_mask(metric: torch.Tensor, gt_mask: torch.Tensor, k: int) -> torch.Tensor:
    """``(b, m, n)`` 0/1: the ``k`` points of largest alignment per valid ground truth."""
    top = metric.topk(k, dim=-1).indices.masked_fill(~gt_mask.expand(-1, -1, k), 0)
    count = torch.zeros(metric.shape, dtype=torch.int8, device=metric.device)
    count.scatter_add_(-1, top, torch.ones_like(top, dtype=torch.int8))
    return count.masked_fill(count > 1, 0)


def keep_top(positive: torch.Tensor, metric: torch.Tensor, k: int) -> torch.Tensor:
    """``positive`` ``(b, m, n)`` reduced to each ground truth's ``k`` positives of largest ``metric``."""
    top = (metric * positive).topk(k, dim=-1).indices
    return positive * torch.zeros_like(positive).scatter_(-1, top, 1)


@torch.no_grad()
def task_aligned_assign(scores, boxes, points, gt_labels, gt_boxes, gt_mask, nc: int, min_side: float,
                        k: int = TOP_K, k2: int | None = None):
    """TOOD's task-aligned assignment. ``scores`` ``(b, n, nc)`` probabilities, ``boxes`` ``(b, n, 4)`` and
    ``points`` ``(n, 2)`` in pixels, ground truths padded to ``(b, m, ...)`` with ``gt_mask`` ``(b, m, 1)``.
    ``k2`` (< ``k``): after contested points are settled, each ground truth keeps only its ``k2`` best
    (the one-to-one branch of end-to-end heads: top-7, then 1).
    Returns target boxes ``(b, n, 4)``, target scores ``(b, n, nc)`` and the positive mask ``(b, n)``."""
    b, m = gt_boxes.shape[:2]
    if m == 0:
        return torch.zeros_like(boxes), torch.zeros_like(scores), torch.zeros_like(scores[..., 0], dtype=torch.bool)
    inside = points_inside(points, gt_boxes, gt_mask, min_side)
    metric, overlaps = alignment(scores, boxes, gt_labels, gt_boxes, inside & gt_mask)
    positive = top_k_mask(metric, gt_mask, k) * inside * gt_mask
    contested = (positive.sum(-2, keepdim=True) > 1).expand(-1, m, -1)
    best = torch.zeros_like(positive).scatter_(1, overlaps.max(1).indices.unsqueeze(1), 1)
    positive = torch.where(contested, best, positive)
    if k2 is not None and k2 != k:
        positive = keep_top(positive, metric, k2)
    fg, gt_index = positive.max(-2)
    flat_index = gt_index + torch.arange(b, device=gt_index.device).unsqueeze(1) * m
    labels = gt_labels.long().flatten()[flat_index].clamp(0)
    target_boxes = gt_boxes.view(-1, 4)[flat_index]
    target_scores = F.one_hot(labels, nc) * (fg.unsqueeze(-1) > 0)
    metric, overlaps = metric * positive, overlaps * positive
    normalised = metric * overlaps.amax(-1, keepdim=True) / (metric.amax(-1, keepdim=True) + EPS)
    return target_boxes, target_scores * normalised.amax(-2).unsqueeze(-1), fg.bool()


def distribution_focal_loss(logits: torch.Tensor, target: torch.Tensor, reg_max: int) -> torch.Tensor:
    """DFL: cross-entropy to the two bins around each target distance, weighted by closeness; mean over the
    four sides. ``logits`` ``(p, 4, reg_max)``, ``target`` ``(p, 4)`` in strides -> ``(p, 1)``."""
    target = target.clamp(0, reg_max - 1 - 0.01)
    left = target.long()
    weight_left = left + 1 - target
    log_p = F.log_softmax(logits, -1)
    nll_left = log_p.gather(-1, left.unsqueeze(-1)).squeeze(-1)
    nll_right = log_p.gather(-1, (left + 1).unsqueeze(-1)).squeeze(-1)
    return -(nll_left * weight_left + nll_right * (1 - weight_left)).mean(-1, keepdim=True)


def padded_targets(targets: torch.Tensor, batch_size: int, img_hw: torch.Tensor):
    """(image, class, cx, cy, w, h) normalised rows -> per image classes ``(b, m, 1)``, pixel xyxy boxes
    ``(b, m, 4)`` and a validity mask ``(b, m, 1)``, padded to the most targets in one image."""
    image = targets[:, 0].long()
    most = int(torch.bincount(image, minlength=batch_size).max()) if len(targets) else 0
    out = torch.zeros(batch_size, most, 5, device=targets.device)
    if most:
        order = torch.argsort(image, stable=True)
        image = image[order]
        first = torch.searchsorted(image, image, side="left")
        slot = torch.arange(len(image), device=targets.device) - first
        out[image, slot] = targets[order, 1:]
        out[..., 1:5] = xywh2xyxy(out[..., 1:5] * img_hw[[1, 0, 1, 0]])
    labels, boxes = out.split((1, 4), 2)
    return labels, boxes, boxes.sum(2, keepdim=True) > 0


@register_loss("v8")
class AnchorFreeLoss:
    """``loss(preds, targets) -> (total * batch_size, detached [box, cls, dfl])`` for per-level head outputs
    ``(b, 4 * reg_max + nc, ny, nx)`` and ``targets`` ``(n, 6)`` = (image index, class, cx, cy, w, h) normalised.

    ``hyp`` gives the gains ``box``, ``cls``, ``dfl`` when it has a ``dfl`` key (an Ultralytics-style hyp);
    a YOLOv5-style hyp (no ``dfl``: its box/cls gains belong to another loss) gets 7.5 / 0.5 / 1.5.
    """

    item_names = ("box", "cls", "dfl")  # what the detached loss items are, in order (results.csv columns)

    def __init__(self, head: AnchorFreeDetect, hyp: dict[str, Any], top_k: int = TOP_K, top_k2: int | None = None):
        self.gains = {k: float(hyp[k]) for k in DEFAULT_GAINS} if "dfl" in hyp else dict(DEFAULT_GAINS)
        self.nc, self.reg_max = head.nc, head.reg_max
        self.strides = [float(s) for s in head.stride]
        self.min_side = self.strides[1] if len(self.strides) > 1 else self.strides[0]
        self.top_k, self.top_k2 = top_k, top_k2
        if self.reg_max == 1:  # no distributions to learn: an L1 term on the side distances takes DFL's place
            self.item_names = ("box", "cls", "l1")

    def side_distances(self, pred_dist: torch.Tensor) -> torch.Tensor:
        """``(b, n, 4 * reg_max)`` -> distances (left, top, right, bottom) in strides ``(b, n, 4)``: the
        expectation of each side's distribution, or the raw value without one (``reg_max`` 1, YOLO26)."""
        b = pred_dist.shape[0]
        if self.reg_max == 1:
            return pred_dist
        bins = torch.arange(self.reg_max, device=pred_dist.device, dtype=pred_dist.dtype)
        return pred_dist.reshape(b, -1, 4, self.reg_max).softmax(3).matmul(bins)

    def __call__(self, preds: list[torch.Tensor], targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch_size = preds[0].shape[0]
        flat = torch.cat([p.flatten(2) for p in preds], 2).transpose(1, 2)
        pred_dist, logits = flat.split((4 * self.reg_max, self.nc), 2)
        points, strides = anchor_points([tuple(p.shape[2:]) for p in preds], self.strides, logits)
        img_hw = torch.tensor(preds[0].shape[2:], device=logits.device, dtype=logits.dtype) * self.strides[0]
        gt_labels, gt_boxes, gt_mask = padded_targets(targets.to(logits.device), batch_size, img_hw)
        left_top, right_bottom = self.side_distances(pred_dist).chunk(2, -1)
        pred_boxes = torch.cat((points - left_top, points + right_bottom), -1)  # xyxy in strides
        target_boxes, target_scores, fg = task_aligned_assign(
            logits.detach().sigmoid(), (pred_boxes.detach() * strides).type(gt_boxes.dtype), points * strides,
            gt_labels, gt_boxes, gt_mask, self.nc, self.min_side, self.top_k, self.top_k2,
        )
        score_sum = target_scores.sum().clamp(min=1)
        bce = F.binary_cross_entropy_with_logits(logits, target_scores.to(logits.dtype), reduction="none")
        lcls = bce.sum() / score_sum
        target_boxes = target_boxes / strides
        weight = target_scores[fg].sum(-1, keepdim=True)
        iou = ciou_xyxy(pred_boxes[fg], target_boxes[fg]).unsqueeze(-1)
        lbox = ((1.0 - iou) * weight).sum() / score_sum
        x1y1, x2y2 = target_boxes.chunk(2, -1)
        distances = torch.cat((points - x1y1, x2y2 - points), -1)  # the target's sides, in strides
        if self.reg_max == 1:
            lside = self.l1_side_loss(pred_dist, distances, strides, img_hw, fg)
        else:
            pred_dist = pred_dist.reshape(batch_size, -1, 4, self.reg_max)
            lside = distribution_focal_loss(pred_dist[fg], distances[fg], self.reg_max)
        lside = (lside * weight).sum() / score_sum
        losses = torch.stack((lbox * self.gains["box"], lcls * self.gains["cls"], lside * self.gains["dfl"]))
        return losses.sum() * batch_size, losses.detach()

    @staticmethod
    def l1_side_loss(pred: torch.Tensor, target: torch.Tensor, strides: torch.Tensor, img_hw: torch.Tensor,
                     fg: torch.Tensor) -> torch.Tensor:
        """Mean L1 distance ``(p, 1)`` of the positives' predicted and target sides, both in pixels divided by
        the image width (left, right) or height (top, bottom), as Ultralytics trains YOLO26's DFL-free head."""
        scale = strides / img_hw[[1, 0, 1, 0]]
        return (pred * scale)[fg].sub((target * scale)[fg]).abs().mean(-1, keepdim=True)
