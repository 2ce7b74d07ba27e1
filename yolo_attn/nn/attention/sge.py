"""Spatial Group-wise Enhance (Li, Hu, Yang, 2019)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from yolo_attn.nn.attention._common import LayerFactory, require_divisible
from yolo_attn.nn.attention._gates import Gate
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import PREPEND_INPUT, Keywords


@register("SGE", rule=Keywords(PREPEND_INPUT, ("channels", "groups")))
class SpatialGroupEnhance(nn.Module):
    """Spatial Group-wise Enhance (Li, Hu, Yang, "Spatial Group-wise Enhance: Improving Semantic Feature Learning
    in Convolutional Networks", arXiv:1905.09646, 2019; official code implus/PytorchInsight).

    Per channel group: similarity of each position with the group's average feature, normalised over
    positions, scaled and shifted by per-group ``weight``/``bias`` (initialised 0 and 1), ``gate_layer`` gate
    (sigmoid).

    YAML ``[groups=64]`` -> ``SpatialGroupEnhance(c1, groups=groups)`` (the input width is prepended so the
    group split is checked at build time; YOLOAir's ``[8]`` means the same), e.g.
    ``[-1, 1, SpatialGroupEnhance, [8]]``.
    """

    yaml_example: ClassVar[str] = "[-1, 1, SpatialGroupEnhance, [8]]"

    def __init__(self, channels: int, gate_layer: LayerFactory = nn.Sigmoid, *, groups: int = 64):
        super().__init__()
        require_divisible(channels, groups, "groups")
        self.groups = groups
        self.weight = nn.Parameter(torch.zeros(1, groups, 1, 1))
        self.bias = nn.Parameter(torch.ones(1, groups, 1, 1))
        self.gate = Gate("spatial", gate_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        grouped = x.reshape(b * self.groups, -1, h, w)
        t = (grouped * grouped.mean((2, 3), keepdim=True)).sum(1).flatten(1)  # (b*g, hw)
        t = t - t.mean(1, keepdim=True)
        t = t / (t.std(1, keepdim=True, correction=1 if h * w > 1 else 0) + 1e-5)
        gate = self.gate(t.view(b, self.groups, h, w) * self.weight + self.bias)  # one map per group
        return (grouped * gate.view(b * self.groups, 1, h, w)).view(b, c, h, w)
