"""Triplet Attention (Misra, Nalamada, Arasanipalai, Hou, WACV 2021)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from yolo_attn.nn.attention._common import channel_mean_max
from yolo_attn.nn.registry import register


class _ZPoolGate(nn.Module):
    """Z-pool (max and mean over dim 1), 7x7 conv + BN to one map, sigmoid gate."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.bn(self.conv(channel_mean_max(x, max_first=True))).sigmoid()


@register()
class TripletAttention(nn.Module):
    """Triplet Attention (Misra, Nalamada, Arasanipalai, Hou, "Rotate to Attend: Convolutional Triplet Attention
    Module", WACV 2021, arXiv:2010.03045; official code landskape-ai/triplet-attention).

    Three Z-pool gates on the (C, W), (H, C) and (H, W) planes, obtained by rotating the tensor,
    averaged; ``no_spatial`` drops the plain (H, W) branch. Needs no channel count.

    YAML ``[no_spatial=False]`` -> ``TripletAttention(no_spatial)`` (args as written, channels kept),
    e.g. ``[-1, 1, TripletAttention, []]``.
    """

    yaml_example: ClassVar[str] = "[-1, 1, TripletAttention, []]"

    def __init__(self, no_spatial: bool = False):
        super().__init__()
        self.cw = _ZPoolGate()
        self.hc = _ZPoolGate()
        self.hw = None if no_spatial else _ZPoolGate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [
            self.cw(x.permute(0, 2, 1, 3)).permute(0, 2, 1, 3),  # attend over (C, W), pooled across H
            self.hc(x.permute(0, 3, 2, 1)).permute(0, 3, 2, 1),  # attend over (H, C), pooled across W
        ]
        if self.hw is not None:
            outs.append(self.hw(x))
        return sum(outs) / len(outs)
