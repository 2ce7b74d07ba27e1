"""YOLOX's training loss (Ge et al., "YOLOX: Exceeding YOLO Series in 2021", arXiv:2107.08430) as YOLOAir trains its
``DetectX`` head (iscyy/yoloair ``models/yolox.py`` ``get_losses``, called by ``utils/loss.py`` ``ComputeXLoss``),
for :class:`~yolo_attn.nn.heads.yolox.DetectX`.

Assignment is SimOTA, per image: candidates are the cells whose centre lies inside some ground truth or within
2.5 strides of its centre; the cost of a (truth, candidate) pair is the BCE of ``sqrt(sigmoid(cls) * sigmoid(obj))``
against the one-hot class, plus ``3 * -log(IoU)``, plus 1e5 unless the cell is both inside the box and near its
centre. Each truth takes its ``k`` cheapest candidates, ``k`` = the sum of its 10 best IoUs (truncated, at least 1);
a cell taken by several truths keeps the cheapest. Losses, each summed and divided by the number of positives in
the batch: ``5 * (1 - IoU^2)`` on positives' boxes, objectness BCE on every cell (target 1 on positives), class BCE
on positives (target: one-hot times the IoU), and, in the last 15 epochs, L1 on the raw box outputs of positives
(target: the truth's centre offset in the cell and log size in strides).

Scaling: YOLOAir back-propagates this sum as it is (``ComputeXLoss`` does not multiply by the batch size, and ignores
the hyp gains). Our losses return ``(total * batch_size, items)`` and the trainer back-propagates the first value, so
this loss returns YOLOAir's sum itself as that value: the gradients, and so the optimisation, are YOLOAir's.
The items are ``(box, obj, cls, l1)``: box is ``5 * IoU loss`` (YOLOAir's first item); l1 is 0 until it starts.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from yolo_attn.losses.registry import register_loss
from yolo_attn.nn.heads.anchor_free import anchor_points
from yolo_attn.nn.heads.yolox import DetectX, flatten_levels

CENTER_RADIUS = 2.5  # candidate cells lie within this many strides of a truth's centre
CANDIDATE_IOUS = 10  # dynamic k = the sum of a truth's best 10 IoUs
IOU_COST, OUTSIDE_COST = 3.0, 1e5
REG_WEIGHT = 5.0
L1_EPOCHS = 15  # YOLOX's no-augmentation tail: the L1 loss joins for the last 15 epochs


def pairwise_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU ``(m, n)`` of xyxy boxes ``a`` ``(m, 4)`` and ``b`` ``(n, 4)`` (no epsilon, as YOLOX's assignment)."""
    top_left = torch.max(a[:, None, :2], b[:, :2])
    inter = (torch.min(a[:, None, 2:], b[:, 2:]) - top_left).clamp_min(0).prod(2)
    area_a, area_b = (a[:, 2:] - a[:, :2]).prod(1), (b[:, 2:] - b[:, :2]).prod(1)
    return inter / (area_a[:, None] + area_b - inter)


def iou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """YOLOX's IoU loss ``1 - IoU^2`` of paired xyxy boxes ``(p, 4)`` -> ``(p,)``."""
    inter = (torch.min(pred[:, 2:], target[:, 2:]) - torch.max(pred[:, :2], target[:, :2])).clamp(min=0).prod(1)
    area_p, area_t = (pred[:, 2:] - pred[:, :2]).prod(1), (target[:, 2:] - target[:, :2]).prod(1)
    return 1 - (inter / (area_p + area_t - inter + 1e-16)) ** 2


def candidates(centres: torch.Tensor, strides: torch.Tensor, gt_xyxy: torch.Tensor, gt_cxcy: torch.Tensor):
    """SimOTA's candidate cells (indices ``(c,)``) and, for each truth and candidate, whether the cell centre is
    both inside the box and within ``CENTER_RADIUS`` strides of its centre ``(m, c)``."""
    inside_box = torch.cat((centres - gt_xyxy[:, None, :2], gt_xyxy[:, None, 2:] - centres), 2).amin(2) > 0
    radius = CENTER_RADIUS * strides
    near_centre = torch.cat((radius + centres - gt_cxcy[:, None], radius - centres + gt_cxcy[:, None]), 2).amin(2) > 0
    chosen = (inside_box.any(0) | near_centre.any(0)).nonzero()[:, 0]
    return chosen, inside_box[:, chosen] & near_centre[:, chosen]


def dynamic_k_match(cost: torch.Tensor, ious: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SimOTA's matching on ``(m, c)`` cost and IoU: each truth its ``k`` cheapest candidates, a candidate claimed
    twice to its cheapest truth. Returns the matched candidates (indices into ``c``) and their truths."""
    k = ious.topk(min(CANDIDATE_IOUS, ious.shape[1]), 1).values.sum(1).int().clamp_min(1)
    cheapest = cost.topk(int(k.max()), 1, largest=False).indices
    keep = torch.arange(cheapest.shape[1], device=cost.device) < k[:, None]
    matching = torch.zeros_like(cost, dtype=torch.bool)
    matching[torch.arange(len(cost), device=cost.device)[:, None].expand_as(cheapest)[keep], cheapest[keep]] = True
    contested = matching.sum(0) > 1
    if contested.any():
        matching[:, contested] = False
        matching[cost[:, contested].argmin(0), contested.nonzero()[:, 0]] = True
    matched = matching.any(0).nonzero()[:, 0]
    return matched, matching[:, matched].int().argmax(0)


@torch.no_grad()
def simota_assign(rows: torch.Tensor, boxes: torch.Tensor, centres, strides, gt_cls, gt_xyxy, gt_cxcy, nc: int):
    """One image's assignment. ``rows`` ``(n, 5 + nc)`` raw outputs, ``boxes`` ``(n, 4)`` decoded xyxy pixels.
    Returns positive cells ``(p,)``, their truths ``(p,)`` and the IoU of each with its truth ``(p,)``."""
    chosen, central = candidates(centres, strides, gt_xyxy, gt_cxcy)
    if len(chosen) == 0:
        empty = chosen.new_zeros(0)
        return empty, empty, boxes.new_zeros(0)
    ious = pairwise_iou(gt_xyxy, boxes[chosen])
    scores = (rows[chosen, 5:].float().sigmoid() * rows[chosen, 4:5].float().sigmoid()).sqrt()
    one_hot = F.one_hot(gt_cls.long(), nc).float()
    cls_cost = F.binary_cross_entropy(scores[None].expand(len(gt_cls), -1, -1),
                                      one_hot[:, None].expand(-1, len(chosen), -1), reduction="none").sum(-1)
    cost = cls_cost + IOU_COST * -torch.log(ious + 1e-8) + OUTSIDE_COST * ~central
    matched, gt_index = dynamic_k_match(cost, ious)
    return chosen[matched], gt_index, ious[gt_index, matched]


@register_loss("yolox")
class YoloxLoss:
    """``loss(preds, targets) -> (YOLOAir's loss, detached [box, obj, cls, l1])`` for :class:`DetectX` maps
    ``(b, 5 + nc, ny, nx)`` and ``targets`` ``(n, 6)`` = (image index, class, cx, cy, w, h) normalised.

    The hyp gains are not used (YOLOX's weights are fixed). ``set_epoch(epoch, epochs)`` (the trainer calls it
    before each epoch) turns the L1 loss on for the last ``L1_EPOCHS`` epochs of a run of at least that many.
    """

    item_names = ("box", "obj", "cls", "l1")  # what the detached loss items are, in order (results.csv columns)

    def __init__(self, head: DetectX, hyp: dict[str, Any]):
        self.nc = head.nc
        self.strides = [float(s) for s in head.stride]
        self.use_l1 = False

    def set_epoch(self, epoch: int, epochs: int) -> None:
        """YOLOAir switches the L1 loss on at epoch ``epochs - 15`` (with mosaic off) and keeps it to the end."""
        self.use_l1 = 0 <= epochs - L1_EPOCHS <= epoch

    def __call__(self, preds: list[torch.Tensor], targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = flatten_levels(preds).float()
        points, strides = anchor_points([tuple(p.shape[2:]) for p in preds], self.strides, rows)
        cells = points - 0.5  # top-left corners in grid units (exact: points are integers + 0.5)
        centre = (rows[..., :2] + cells) * strides
        half = rows[..., 2:4].exp() * (strides / 2)
        boxes = torch.cat((centre - half, centre + half), -1)
        img_wh = torch.tensor(preds[0].shape[2:][::-1], device=rows.device, dtype=rows.dtype) * self.strides[0]
        targets = targets.to(rows.device)
        gt_cxcywh = targets[:, 2:6].float() * img_wh.repeat(2)
        gt_xyxy = torch.cat((gt_cxcywh[:, :2] - gt_cxcywh[:, 2:] / 2, gt_cxcywh[:, :2] + gt_cxcywh[:, 2:] / 2), 1)
        positives = self.assign(rows, boxes, cells, strides, targets, gt_cxcywh, gt_xyxy)
        return self.losses(rows, boxes, cells, strides, targets, gt_cxcywh, gt_xyxy, positives)

    def assign(self, rows, boxes, cells, strides, targets, gt_cxcywh, gt_xyxy) -> list[tuple[torch.Tensor, ...]]:
        """Per image: (positive cells, their truths' row indices in ``targets``, IoU with their truth)."""
        centres = (cells + 0.5) * strides
        out: list[tuple[torch.Tensor, ...]] = []
        for i in range(rows.shape[0]):
            own = (targets[:, 0] == i).nonzero()[:, 0]
            if len(own) == 0:
                out.append((own, own, rows.new_zeros(0)))
                continue
            gt_cls = targets[own, 1]
            cells_i, gt_i, iou_i = simota_assign(rows[i], boxes[i], centres, strides, gt_cls, gt_xyxy[own],
                                                 gt_cxcywh[own, :2], self.nc)
            out.append((cells_i, own[gt_i], iou_i))
        return out

    def losses(self, rows, boxes, cells, strides, targets, gt_cxcywh, gt_xyxy, positives):
        """YOLOX's four terms over the batch, each divided by the number of positives (at least 1)."""
        b, n = rows.shape[:2]
        image = torch.cat([torch.full_like(c, i) for i, (c, _, _) in enumerate(positives)])
        cell, gt, iou = (torch.cat(parts) for parts in zip(*positives, strict=True))
        num_fg = max(len(cell), 1)
        loss_box = REG_WEIGHT * iou_loss(boxes[image, cell], gt_xyxy[gt]).sum() / num_fg
        obj_target = torch.zeros(b, n, device=rows.device)
        obj_target[image, cell] = 1.0
        loss_obj = F.binary_cross_entropy_with_logits(rows[..., 4], obj_target, reduction="sum") / num_fg
        cls_target = F.one_hot(targets[gt, 1].long(), self.nc) * iou[:, None]
        loss_cls = F.binary_cross_entropy_with_logits(rows[image, cell, 5:], cls_target, reduction="sum") / num_fg
        loss_l1 = torch.zeros_like(loss_box)
        if self.use_l1:
            s = strides[cell]
            l1_target = torch.cat((gt_cxcywh[gt, :2] / s - cells[cell], torch.log(gt_cxcywh[gt, 2:] / s + 1e-8)), 1)
            loss_l1 = (rows[image, cell, :4] - l1_target).abs().sum() / num_fg
        items = torch.stack((loss_box, loss_obj, loss_cls, loss_l1))
        return items.sum(), items.detach()
