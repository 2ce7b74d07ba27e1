"""Coordinate Attention (Hou, Zhou, Feng, CVPR 2021)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from yolo_attn.nn.attention._common import check_same_width
from yolo_attn.nn.attention._gates import GateRecorder
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import CONV


@register("CoordAtt", "CoordAttention", rule=CONV)
class CA(GateRecorder, nn.Module):
    """Coordinate Attention (Hou, Zhou, Feng, "Coordinate Attention for Efficient Mobile Network Design",
    CVPR 2021, arXiv:2103.02907; official code houqb/CoordAttention).

    Pools along H and along W separately, encodes both with a shared 1x1 conv + BN + h-swish
    (``mip = max(8, c1 // reduction)`` channels), then two 1x1 convs give direction-aware sigmoid
    gates ``a_h`` (per row) and ``a_w`` (per column): ``y = x * a_h * a_w``.

    YAML ``[c2, reduction=32]`` -> ``CA(c1, c2, reduction)`` (YOLOAir registers CA like Conv; ``c2``
    must equal ``c1``), e.g. ``[-1, 1, CA, [1024]]``.
    """

    yaml_example: ClassVar[str] = "[-1, 1, CA, [256, 32]]"

    def __init__(self, c1: int, c2: int | None = None, reduction: int = 32):
        super().__init__()
        check_same_width(c1, c2)
        mip = max(8, c1 // reduction)
        self.conv1 = nn.Conv2d(c1, mip, 1)
        self.bn1 = nn.BatchNorm2d(mip)
        self.act = nn.Hardswish()
        self.conv_h = nn.Conv2d(mip, c1, 1)
        self.conv_w = nn.Conv2d(mip, c1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pooled_h = x.mean(3, keepdim=True)  # (b, c, h, 1)
        pooled_w = x.mean(2, keepdim=True).transpose(2, 3)  # (b, c, w, 1)
        y = self.act(self.bn1(self.conv1(torch.cat((pooled_h, pooled_w), 2))))
        y_h, y_w = y.split((h, w), 2)
        gate_h, gate_w = self.conv_h(y_h).sigmoid(), self.conv_w(y_w.transpose(2, 3)).sigmoid()
        if self.gates_wanted:
            self.record_gate("spatial", gate_h * gate_w)
        return x * gate_h * gate_w
