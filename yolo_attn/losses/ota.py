"""YOLOv7's OTA loss (WongKinYiu/yolov7 ``utils/loss.py`` ComputeLossOTA / ComputeLossAuxOTA; Wang et al. 2022).

Candidates are YOLOv5's anchor-ratio matches in the own and neighbouring cells; per image, each
ground truth then keeps its ``k`` lowest-cost candidates (SimOTA-style dynamic k, Ge et al. 2021:
k = sum of its top-10 IoUs, top-20 in the auxiliary-head loss), cost = class BCE + 3 * -log IoU, and a
candidate claimed by several ground truths goes to the cheapest. Box, objectness and class losses are
then YOLOv5's. An IAuxDetect head's auxiliary outputs are matched with all four neighbours (costed on
the lead outputs) and weighted 0.25. As YOLOv7, target boxes are scaled to pixels by the image height
on both axes (the same as width for the square batches YOLOv7 trains on).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from yolo_attn.losses.registry import register_loss
from yolo_attn.losses.yolov5 import ComputeLoss, LevelTargets
from yolo_attn.nn.heads.contract import AnchorBasedHead
from yolo_attn.utils.boxes import box_iou, xywh2xyxy

LEAD_NEIGHBOUR_BIAS, AUX_NEIGHBOUR_BIAS = 0.5, 1.0
AUX_WEIGHT = 0.25
IOU_COST_WEIGHT = 3.0


@register_loss("ota")
class ComputeLossOTA(ComputeLoss):
    """YOLOv7's ``ComputeLossOTA`` for heads with ``nl`` outputs (IDetect, Detect)."""

    dynamic_k_candidates = 10  # IoUs summed for each ground truth's dynamic k

    def __init__(self, head: AnchorBasedHead, hyp: dict[str, Any]):
        super().__init__(head, hyp)
        self.stride = head.stride.to(self.device)

    def __call__(self, preds: list[torch.Tensor], targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lead = preds[: self.nl]
        losses = self.level_losses(lead, *self.ota_targets(lead, targets, LEAD_NEIGHBOUR_BIAS))
        return self.total(*losses, batch_size=preds[0].shape[0])

    @torch.no_grad()
    def ota_targets(self, preds: list[torch.Tensor], targets: torch.Tensor, neighbour_bias: float) -> LevelTargets:
        """Dynamic-k assignment; returns per level (classes, boxes in grid units, (image, anchor, gy, gx), anchors)."""
        _, _, candidates, candidate_anchors = self.build_targets(preds, targets, neighbour_bias)
        image_h = float(preds[0].shape[2]) * float(self.stride[0])
        image_gain = torch.full((4,), image_h, device=self.device)
        # Per level: matched (image, anchor, gy, gx) cells, their targets and anchors; seeded empty.
        level_cells = [[torch.zeros((0, 4), dtype=torch.long, device=self.device)] for _ in range(self.nl)]
        level_targets = [[torch.zeros((0, 6), device=self.device)] for _ in range(self.nl)]
        level_anchors = [[torch.zeros((0, 2), device=self.device)] for _ in range(self.nl)]
        for image in range(preds[0].shape[0]):
            image_targets = targets[targets[:, 0] == image]
            if not len(image_targets):
                continue
            box_parts, objectness, classes, level_parts, cell_parts, anchor_parts = [], [], [], [], [], []
            for i, pi in enumerate(preds):
                b, a, gj, gi = candidates[i]
                mine = b == image
                b, a, gj, gi = b[mine], a[mine], gj[mine], gi[mine]
                fg = pi[b, a, gj, gi].float()
                grid = torch.stack([gi, gj], 1)
                pxy = (fg[:, :2].sigmoid() * 2 - 0.5 + grid) * self.stride[i]
                pwh = (fg[:, 2:4].sigmoid() * 2) ** 2 * candidate_anchors[i][mine] * self.stride[i]
                box_parts.append(xywh2xyxy(torch.cat((pxy, pwh), 1)))
                objectness.append(fg[:, 4:5])
                classes.append(fg[:, 5:])
                level_parts.append(torch.full((len(b),), i, device=self.device))
                cell_parts.append(torch.stack((b, a, gj, gi), 1))
                anchor_parts.append(candidate_anchors[i][mine])
            boxes = torch.cat(box_parts)
            if not len(boxes):
                continue
            matched, gt_index = self.dynamic_k_match(
                xywh2xyxy(image_targets[:, 2:6] * image_gain), image_targets[:, 1].long(), boxes,
                torch.cat(objectness), torch.cat(classes),
            )
            levels, cells = torch.cat(level_parts)[matched], torch.cat(cell_parts)[matched]
            anchors = torch.cat(anchor_parts)[matched]
            matched_targets = image_targets[gt_index]
            for i in range(self.nl):
                on_level = levels == i
                level_cells[i].append(cells[on_level])
                level_targets[i].append(matched_targets[on_level])
                level_anchors[i].append(anchors[on_level])
        tcls, tbox, indices, anch = [], [], [], []
        for i, pi in enumerate(preds):
            b, a, gj, gi = torch.cat(level_cells[i]).T
            matched_targets, anchors = torch.cat(level_targets[i]), torch.cat(level_anchors[i])
            gain = torch.tensor(pi.shape, device=self.device)[[3, 2, 3, 2]].float()
            box = matched_targets[:, 2:6] * gain
            box[:, :2] -= torch.stack((gi, gj), 1)
            tcls.append(matched_targets[:, 1].long())
            tbox.append(box)
            indices.append((b, a, gj, gi))
            anch.append(anchors)
        return tcls, tbox, indices, anch

    def dynamic_k_match(
        self, gt_boxes: torch.Tensor, gt_classes: torch.Tensor, boxes: torch.Tensor, objectness: torch.Tensor,
        class_logits: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(mask of candidates kept, the ground truth each kept one is assigned to)."""
        num_gt, num_candidates = len(gt_boxes), len(boxes)
        pair_iou = box_iou(gt_boxes, boxes)
        iou_cost = -torch.log(pair_iou + 1e-8)
        top_ious, _ = torch.topk(pair_iou, min(self.dynamic_k_candidates, num_candidates), dim=1)
        dynamic_ks = torch.clamp(top_ious.sum(1).int(), min=1)
        one_hot = F.one_hot(gt_classes, self.nc).float().unsqueeze(1).repeat(1, num_candidates, 1)
        scores = (class_logits.sigmoid() * objectness.sigmoid()).unsqueeze(0).repeat(num_gt, 1, 1).sqrt()
        logits = torch.log(scores / (1 - scores))
        class_cost = F.binary_cross_entropy_with_logits(logits, one_hot, reduction="none").sum(-1)
        cost = class_cost + IOU_COST_WEIGHT * iou_cost
        matching = torch.zeros_like(cost)
        for g in range(num_gt):
            _, chosen = torch.topk(cost[g], k=int(dynamic_ks[g]), largest=False)
            matching[g][chosen] = 1.0
        contested = matching.sum(0) > 1
        if contested.any():
            cheapest = cost[:, contested].argmin(0)
            matching[:, contested] = 0.0
            matching[cheapest, contested] = 1.0
        kept = matching.sum(0) > 0
        return kept, matching[:, kept].argmax(0)


@register_loss("aux-ota")
class ComputeLossAuxOTA(ComputeLossOTA):
    """YOLOv7's ``ComputeLossAuxOTA`` for IAuxDetect (``nl`` lead + ``nl`` auxiliary outputs): dynamic k from
    the top 20 IoUs, and the auxiliary outputs trained on a wider assignment weighted 0.25."""

    dynamic_k_candidates = 20

    def __call__(self, preds: list[torch.Tensor], targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lead, aux = preds[: self.nl], preds[self.nl :]
        losses = self.level_losses(lead, *self.ota_targets(lead, targets, LEAD_NEIGHBOUR_BIAS))
        if aux:
            aux_losses = self.level_losses(aux, *self.ota_targets(lead, targets, AUX_NEIGHBOUR_BIAS), weight=AUX_WEIGHT)
            box, obj, cls = (a + b for a, b in zip(losses, aux_losses, strict=True))
            losses = box, obj, cls
        return self.total(*losses, batch_size=preds[0].shape[0])
