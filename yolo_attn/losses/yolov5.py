"""YOLOv5's training loss (ultralytics/yolov5 ``utils/loss.py``, Jocher et al. 2020).

Targets are matched to anchors whose width/height ratio to the box is below ``anchor_t``, in the
box's own cell and its two nearest neighbouring cells. Box loss is 1 - CIoU (Zheng et al., AAAI 2020),
objectness is BCE against the detached IoU, classes are BCE with label smoothing; the objectness of
each level is weighted by ``balance`` (4.0, 1.0, 0.4 for P3-P5).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from yolo_attn.losses.registry import register_loss
from yolo_attn.nn.heads.contract import AnchorBasedHead

# Neighbour-cell offsets: the box's own cell, then left, up, right, down.
NEIGHBOUR_OFFSETS = torch.tensor([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1]], dtype=torch.float32)
LEVEL_BALANCE = {3: [4.0, 1.0, 0.4]}
LEVEL_BALANCE_DEFAULT = [4.0, 1.0, 0.25, 0.06, 0.02]
Cells = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # (image, anchor, gy, gx) indices
# Per level: target classes, boxes, matched cells and their anchors.
LevelTargets = tuple[list[torch.Tensor], list[torch.Tensor], list[Cells], list[torch.Tensor]]


def bbox_ciou(box1: torch.Tensor, box2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Complete IoU of paired (cx, cy, w, h) boxes ``(n, 4)`` -> ``(n,)``, exactly as YOLOv5's
    ``bbox_iou(CIoU=True)``."""
    (x1, y1, w1, h1), (x2, y2, w2, h2) = box1.unbind(-1), box2.unbind(-1)
    b1_x1, b1_x2, b1_y1, b1_y2 = x1 - w1 / 2, x1 + w1 / 2, y1 - h1 / 2, y1 + h1 / 2
    b2_x1, b2_x2, b2_y1, b2_y2 = x2 - w2 / 2, x2 + w2 / 2, y2 - h2 / 2, y2 + h2 / 2
    inter = (torch.minimum(b1_x2, b2_x2) - torch.maximum(b1_x1, b2_x1)).clamp(0) * (
        torch.minimum(b1_y2, b2_y2) - torch.maximum(b1_y1, b2_y1)
    ).clamp(0)
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    enclosing_w = torch.maximum(b1_x2, b2_x2) - torch.minimum(b1_x1, b2_x1)
    enclosing_h = torch.maximum(b1_y2, b2_y2) - torch.minimum(b1_y1, b2_y1)
    diagonal_sq = enclosing_w**2 + enclosing_h**2 + eps
    centre_dist_sq = (x2 - x1) ** 2 + (y2 - y1) ** 2
    v = (4 / math.pi**2) * (torch.atan(w2 / (h2 + eps)) - torch.atan(w1 / (h1 + eps))).pow(2)
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (centre_dist_sq / diagonal_sq + v * alpha)


def smooth_bce_targets(eps: float = 0.0) -> tuple[float, float]:
    """Positive and negative BCE targets with label smoothing ``eps`` (Szegedy et al. 2016)."""
    return 1.0 - 0.5 * eps, 0.5 * eps


class FocalLoss(nn.Module):
    """Focal loss (Lin et al., ICCV 2017) wrapped around a ``BCEWithLogitsLoss``; mean-reduced."""

    def __init__(self, bce: nn.BCEWithLogitsLoss, gamma: float = 1.5, alpha: float = 0.25):
        super().__init__()
        self.bce = bce
        self.bce.reduction = "none"
        self.gamma, self.alpha = gamma, alpha

    def forward(self, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        loss = self.bce(pred, true)
        prob = pred.sigmoid()
        p_t = true * prob + (1 - true) * (1 - prob)
        alpha_factor = true * self.alpha + (1 - true) * (1 - self.alpha)
        return (loss * alpha_factor * (1.0 - p_t) ** self.gamma).mean()


def scale_loss_gains(hyp: dict[str, Any], nl: int, nc: int, img_size: int) -> dict[str, Any]:
    """YOLOv5's hyp scaling: box by 3/nl, cls by nc/80 * 3/nl, obj by (img/640)^2 * 3/nl (returns a copy)."""
    hyp = dict(hyp)
    hyp["box"] = hyp["box"] * 3 / nl
    hyp["cls"] = hyp["cls"] * nc / 80 * 3 / nl
    hyp["obj"] = hyp["obj"] * (img_size / 640) ** 2 * 3 / nl
    return hyp


@register_loss("v5")
class ComputeLoss:
    """YOLOv5 loss for a ``Detect`` head: ``loss(preds, targets) -> (total * batch_size, [box, obj, cls])``.

    ``targets`` is ``(n, 6)`` = (image index, class, cx, cy, w, h) normalised to the input image.
    ``hyp`` needs box, obj, cls, cls_pw, obj_pw, anchor_t, fl_gamma and optionally label_smoothing.
    """

    item_names = ("box", "obj", "cls")  # what the detached loss items are, in order (results.csv columns)

    def __init__(self, head: AnchorBasedHead, hyp: dict[str, Any]):
        device = head.anchors.device
        self.hyp = hyp
        self.bce_cls: nn.Module = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([hyp["cls_pw"]], device=device))
        self.bce_obj: nn.Module = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([hyp["obj_pw"]], device=device))
        if hyp.get("fl_gamma", 0.0) > 0:
            self.bce_cls = FocalLoss(self.bce_cls, hyp["fl_gamma"])
            self.bce_obj = FocalLoss(self.bce_obj, hyp["fl_gamma"])
        self.cls_positive, self.cls_negative = smooth_bce_targets(hyp.get("label_smoothing", 0.0))
        self.nl, self.na, self.nc = head.nl, head.na, head.nc
        self.balance = LEVEL_BALANCE.get(self.nl, LEVEL_BALANCE_DEFAULT)
        self.anchors = head.anchors  # (nl, na, 2) in stride units
        self.iou_ratio = 1.0  # YOLOv5's gr: objectness target = IoU
        self.device = device

    def __call__(self, preds: list[torch.Tensor], targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tcls, tbox, indices, anchors = self.build_targets(preds, targets)
        return self.total(*self.level_losses(preds, tcls, tbox, indices, anchors), batch_size=preds[0].shape[0])

    def total(self, lbox: torch.Tensor, lobj: torch.Tensor, lcls: torch.Tensor, batch_size: int):
        """Apply the hyp gains; (sum * batch size, detached [box, obj, cls])."""
        lbox, lobj, lcls = lbox * self.hyp["box"], lobj * self.hyp["obj"], lcls * self.hyp["cls"]
        return (lbox + lobj + lcls) * batch_size, torch.cat((lbox, lobj, lcls)).detach()

    def level_losses(self, preds, tcls, tbox, indices, anchors, weight: float = 1.0
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Un-gained (box, obj, cls) losses summed over levels for matched cells ``indices`` = (image, anchor, gy, gx).

        ``tbox`` holds target (x, y) offsets from the cell and (w, h), in grid units; ``weight`` scales all three.
        """
        lbox, lobj, lcls = (torch.zeros(1, device=self.device) for _ in range(3))
        for i, pi in enumerate(preds):
            b, a, gj, gi = indices[i]
            tobj = torch.zeros(pi.shape[:4], dtype=pi.dtype, device=self.device)
            n = b.shape[0]
            if n:
                pxy, pwh, _, pcls = pi[b, a, gj, gi].split((2, 2, 1, self.nc), 1)
                pxy = pxy.sigmoid() * 2 - 0.5
                pwh = (pwh.sigmoid() * 2) ** 2 * anchors[i]
                iou = bbox_ciou(torch.cat((pxy, pwh), 1), tbox[i])
                lbox += (1.0 - iou).mean() * weight
                iou = iou.detach().clamp(0).type(tobj.dtype)
                tobj[b, a, gj, gi] = (1.0 - self.iou_ratio) + self.iou_ratio * iou
                if self.nc > 1:
                    t = torch.full_like(pcls, self.cls_negative)
                    t[range(n), tcls[i]] = self.cls_positive
                    lcls += self.bce_cls(pcls, t) * weight
            lobj += self.bce_obj(pi[..., 4], tobj) * self.balance[i] * weight
        return lbox, lobj, lcls

    def build_targets(self, preds: list[torch.Tensor], targets: torch.Tensor, neighbour_bias: float = 0.5
                      ) -> LevelTargets:
        """Per level: target classes, boxes (xy offset in cell, wh in cells), (image, anchor, gy, gx) and anchors.

        A target also claims a neighbouring cell when its centre is within ``neighbour_bias`` of that side
        (0.5: the two nearest neighbours, YOLOv5 and YOLOv7's lead head; 1.0: all four, YOLOv7's auxiliary head).
        """
        na, nt = self.na, targets.shape[0]
        tcls, tbox, indices, anch = [], [], [], []
        gain = torch.ones(7, device=self.device)
        anchor_index = torch.arange(na, device=self.device).float().view(na, 1).repeat(1, nt)
        targets = torch.cat((targets.repeat(na, 1, 1), anchor_index[..., None]), 2)  # (na, nt, 7)
        offsets_all = NEIGHBOUR_OFFSETS.to(self.device) * neighbour_bias
        for i in range(self.nl):
            anchors, shape = self.anchors[i], preds[i].shape
            gain[2:6] = torch.tensor(shape, device=self.device)[[3, 2, 3, 2]].float()
            t = targets * gain
            if nt:
                ratio = t[..., 4:6] / anchors[:, None]
                t = t[torch.max(ratio, 1 / ratio).max(2)[0] < self.hyp["anchor_t"]]
                gxy = t[:, 2:4]
                gxy_inverse = gain[[2, 3]] - gxy
                left, up = ((gxy % 1 < neighbour_bias) & (gxy > 1)).T
                right, down = ((gxy_inverse % 1 < neighbour_bias) & (gxy_inverse > 1)).T
                chosen = torch.stack((torch.ones_like(left), left, up, right, down))
                t = t.repeat((5, 1, 1))[chosen]
                offsets: torch.Tensor | int = (torch.zeros_like(gxy)[None] + offsets_all[:, None])[chosen]
            else:
                t = targets[0]
                offsets = 0
            image_class, gxy, gwh, a = t.split((2, 2, 2, 1), 1)
            a, (b, c) = a.long().view(-1), image_class.long().T
            gij = (gxy - offsets).long()
            gi, gj = gij.T
            gj, gi = gj.clamp_(0, shape[2] - 1), gi.clamp_(0, shape[3] - 1)
            indices.append((b, a, gj, gi))
            tbox.append(torch.cat((gxy - torch.stack((gi, gj), 1), gwh), 1))
            anch.append(anchors[a])
            tcls.append(c)
        return tcls, tbox, indices, anch
