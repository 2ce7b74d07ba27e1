"""YOLOAir's involution layer (iscyy/yoloair ``models/common.py``).

Module and attribute names follow YOLOAir so that parameter counts and ``state_dict`` keys match.
"""

from __future__ import annotations

import torch
from torch import nn

from yolo_attn.nn.blocks.conv import Conv
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import CONV


@register(rule=CONV)
class Involution(nn.Module):
    """Involution (Li et al., "Involution: Inverting the Inherence of Convolution for Visual Recognition",
    CVPR 2021, arXiv:2103.06255): a k x k kernel generated per position (from the optionally average-pooled
    input through two 1x1 Convs) and shared by groups of 16 channels. The output keeps the input width whatever
    ``c2`` says, as in YOLOAir. YAML: ``[c2, k, s]``.
    Example: ``[-1, 1, Involution, [128, 3, 2]]``."""

    def __init__(self, c1: int, c2: int, k: int, s: int):
        super().__init__()
        if c1 % 16:
            raise ValueError(f"Involution needs input channels divisible by 16, got {c1}")
        self.kernel_size, self.stride, self.c1 = k, s, c1
        self.group_channels, self.groups = 16, c1 // 16
        self.conv1 = Conv(c1, c1 // 4, 1)
        self.conv2 = Conv(c1 // 4, k * k * self.groups, 1, 1)
        if s > 1:
            self.avgpool = nn.AvgPool2d(s, s)
        self.unfold = nn.Unfold(k, 1, (k - 1) // 2, s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.conv2(self.conv1(self.avgpool(x) if self.stride > 1 else x))
        b, _, h, w = weight.shape
        weight = weight.view(b, self.groups, 1, self.kernel_size**2, h, w)
        patches = self.unfold(x).view(b, self.groups, self.group_channels, self.kernel_size**2, h, w)
        return (weight * patches).sum(3).view(b, self.c1, h, w)
