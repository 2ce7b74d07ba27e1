"""Efficient Multi-scale Attention (Ouyang et al., ICASSP 2023)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from yolo_attn.nn.attention._common import LayerFactory, require_divisible
from yolo_attn.nn.attention._gates import Gate
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import PREPEND_INPUT, Keywords


@register("EMAttention", "EMA_attention", rule=Keywords(PREPEND_INPUT, ("channels", "factor")))
class EMA(nn.Module):
    """Efficient Multi-scale Attention (Ouyang, He, Zhang, Li, Huang, Luo, Zhang, Zhu, Huang, "Efficient
    Multi-Scale Attention Module with Cross-Spatial Learning", ICASSP 2023, arXiv:2305.13563; official code
    YOLOonMe/EMA-attention-module).

    Channels are split into ``factor`` groups. A 1x1 branch encodes H- and W-pooled descriptors
    (coordinate-attention style: per-row and per-column gates, then GroupNorm) and a 3x3 branch captures local
    context; cross-spatial learning multiplies each branch's softmaxed global descriptor with the other branch's
    features to form one spatial map per group, the final gate. All three gates are ``gate_layer`` (sigmoid).

    YAML ``[factor=32]`` -> ``EMA(c1, factor=factor)`` (input width prepended; ``c1`` divisible by ``factor``),
    e.g. ``[-1, 1, EMA, [8]]``.
    """

    yaml_example: ClassVar[str] = "[-1, 1, EMA, [8]]"

    def __init__(self, channels: int, gate_layer: LayerFactory = nn.Sigmoid, *, factor: int = 32):
        super().__init__()
        require_divisible(channels, factor, "factor")
        self.groups = factor
        cg = channels // factor
        self.gn = nn.GroupNorm(cg, cg)
        self.conv1x1 = nn.Conv2d(cg, cg, 1)
        self.conv3x3 = nn.Conv2d(cg, cg, 3, padding=1)
        self.gate_h = Gate("spatial", gate_layer)
        self.gate_w = Gate("spatial", gate_layer)
        self.gate = Gate("spatial", gate_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        group_x = x.reshape(b * self.groups, -1, h, w)
        pooled = torch.cat((group_x.mean(3, keepdim=True), group_x.mean(2, keepdim=True).transpose(2, 3)), 2)
        x_h, x_w = self.conv1x1(pooled).split((h, w), 2)
        gate_h = self.gate_h(x_h.reshape(b, c, h, 1)).view_as(x_h)  # the gates in the features' layout (b, c, ...)
        gate_w = self.gate_w(x_w.transpose(2, 3).reshape(b, c, 1, w)).view(b * self.groups, -1, 1, w)
        x1 = self.gn(group_x * gate_h * gate_w)
        x2 = self.conv3x3(group_x)
        descriptor1 = x1.mean((2, 3)).softmax(-1)[:, None, :]  # (b*g, 1, c/g)
        descriptor2 = x2.mean((2, 3)).softmax(-1)[:, None, :]
        weights = descriptor1 @ x2.flatten(2) + descriptor2 @ x1.flatten(2)  # (b*g, 1, hw)
        gate = self.gate(weights.view(b, self.groups, h, w))  # one map per group
        return (group_x * gate.view(b * self.groups, 1, h, w)).reshape(b, c, h, w)
