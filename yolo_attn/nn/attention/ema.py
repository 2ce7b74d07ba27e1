"""Efficient Multi-scale Attention (Ouyang et al., ICASSP 2023)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from yolo_attn.nn.attention._common import require_divisible
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import PREPEND_INPUT


@register("EMAttention", "EMA_attention", rule=PREPEND_INPUT)
class EMA(nn.Module):
    """Efficient Multi-scale Attention (Ouyang, He, Zhang, Li, Huang, Luo, Zhang, Zhu, Huang, "Efficient
    Multi-Scale Attention Module with Cross-Spatial Learning", ICASSP 2023, arXiv:2305.13563; official code
    YOLOonMe/EMA-attention-module).

    Channels are split into ``factor`` groups. A 1x1 branch encodes H- and W-pooled descriptors
    (coordinate-attention style, then GroupNorm) and a 3x3 branch captures local context; cross-spatial
    learning multiplies each branch's softmaxed global descriptor with the other branch's features to
    form one spatial weight map per group.

    YAML ``[factor=32]`` -> ``EMA(c1, factor)`` (input width prepended; ``c1`` divisible by ``factor``),
    e.g. ``[-1, 1, EMA, [8]]``.
    """

    yaml_example: ClassVar[str] = "[-1, 1, EMA, [8]]"

    def __init__(self, c1: int, factor: int = 32):
        super().__init__()
        require_divisible(c1, factor, "factor")
        self.groups = factor
        cg = c1 // factor
        self.gn = nn.GroupNorm(cg, cg)
        self.conv1x1 = nn.Conv2d(cg, cg, 1)
        self.conv3x3 = nn.Conv2d(cg, cg, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        group_x = x.reshape(b * self.groups, -1, h, w)
        pooled = torch.cat((group_x.mean(3, keepdim=True), group_x.mean(2, keepdim=True).transpose(2, 3)), 2)
        x_h, x_w = self.conv1x1(pooled).split((h, w), 2)
        x1 = self.gn(group_x * x_h.sigmoid() * x_w.transpose(2, 3).sigmoid())
        x2 = self.conv3x3(group_x)
        descriptor1 = x1.mean((2, 3)).softmax(-1)[:, None, :]  # (b*g, 1, c/g)
        descriptor2 = x2.mean((2, 3)).softmax(-1)[:, None, :]
        weights = descriptor1 @ x2.flatten(2) + descriptor2 @ x1.flatten(2)  # (b*g, 1, hw)
        return (group_x * weights.view(-1, 1, h, w).sigmoid()).reshape(b, c, h, w)
