"""YOLOX's decoupled, anchor-free head as YOLOAir writes it (``DetectX``; Ge et al., "YOLOX: Exceeding YOLO
Series in 2021", arXiv:2107.08430; iscyy/yoloair ``models/yolox.py``).

In YOLOAir's YAMLs the head's stems and its two 3x3 conv towers are ordinary ``Conv`` layers; ``DetectX`` reads
them in pairs ``[cls0, reg0, cls1, reg1, ...]`` and holds only the three 1x1 prediction convs per level:
``cls_preds`` (class logits) on the class tower, ``reg_preds`` (box) and ``obj_preds`` (objectness) on the
regression tower. Every cell is one prediction point: the box centre is ``(offset + cell) * stride`` and its
size ``exp(log size) * stride``. It trains only with YOLOX's loss (:mod:`yolo_attn.losses.yolox`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from yolo_attn.nn.heads.anchor_free import CellPointHead
from yolo_attn.nn.heads.contract import HeadContract
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import DetectionHead

PRIOR_PROB = 1e-2  # YOLOX's initial class and objectness probability (RetinaNet's prior)


def flatten_levels(raw: list[torch.Tensor]) -> torch.Tensor:
    """Per-level maps ``(b, c, h, w)`` -> ``(b, n, c)`` rows, levels in order, each level rows first."""
    return torch.cat([p.flatten(2) for p in raw], 2).transpose(1, 2)


@register(rule=DetectionHead(inputs_per_level=2, signature="[nc, anchors=1] from [cls0, reg0, cls1, reg1, ...]"))
class DetectX(CellPointHead):
    """YOLOX's prediction convs over YOLOAir's class/regression towers. YAML: ``[nc, anchors]`` with
    ``anchors: 1`` and inputs ``[cls0, reg0, cls1, reg1, cls2, reg2]``.

    Training returns per-level maps ``(b, 5 + nc, ny, nx)`` = (box offsets x, y, log w, log h, objectness logit,
    class logits); eval returns ``(decoded (b, n, 5 + nc) rows (cx, cy, w, h, obj, classes...) in input pixels,
    raw maps)``; with ``export`` the decoded tensor alone.
    """

    contract = HeadContract(default_loss="yolox", losses=("yolox",), eval_loss="yolox", anchor_based=False,
                            objectness=True, upstream="yoloair")
    export = False  # set by the exporter: eval forward then returns only the decoded tensor

    def __init__(self, nc: int = 80, anchors=(), ch=(), inplace: bool = True):
        # ``inplace`` is accepted as YOLOAir's constructor does; decoding never writes in place.
        super().__init__(len(ch) // 2)
        if any(len(level) != 2 for level in anchors):
            raise ValueError(f"YOLOX predicts one box per cell: 'anchors' must be 1, got {len(anchors[0]) // 2}")
        self.nc, self.no = nc, nc + 5
        cls_in, reg_in = ch[0::2], ch[1::2]
        self.cls_preds = nn.ModuleList(nn.Conv2d(c, nc, 1) for c in cls_in)
        self.reg_preds = nn.ModuleList(nn.Conv2d(c, 4, 1) for c in reg_in)
        self.obj_preds = nn.ModuleList(nn.Conv2d(c, 1, 1) for c in reg_in)

    def forward(self, xs: list[torch.Tensor]):
        raw = [
            torch.cat((reg(r), obj(r), cls(c)), 1)
            for cls, reg, obj, c, r in zip(self.cls_preds, self.reg_preds, self.obj_preds, xs[0::2], xs[1::2],
                                           strict=True)
        ]
        if self.training:
            return raw
        decoded = self.decode(raw)
        return decoded if self.export else (decoded, raw)

    def decode(self, raw: list[torch.Tensor]) -> torch.Tensor:
        """Raw level maps -> ``(b, n, 5 + nc)``: centre ``(offset + cell) * stride``, size ``exp(t) * stride``
        in pixels, then sigmoid objectness and class scores (YOLOX's ``decode_outputs``)."""
        rows = flatten_levels(raw)
        centres, strides = self.anchors_for(raw)
        xy = (rows[..., :2] + (centres - 0.5)) * strides  # cell corner + offset, exactly as YOLOX
        wh = rows[..., 2:4].exp() * strides
        return torch.cat((xy, wh, rows[..., 4:].sigmoid()), -1)

    @torch.no_grad()
    def initialize_biases(self) -> None:
        """Class and objectness logits start at ``logit(PRIOR_PROB)`` (YOLOX's ``initialize_biases``);
        the box convs keep PyTorch's default bias."""
        prior = -math.log((1 - PRIOR_PROB) / PRIOR_PROB)
        for conv in (*self.cls_preds, *self.obj_preds):
            conv.bias.fill_(prior)
