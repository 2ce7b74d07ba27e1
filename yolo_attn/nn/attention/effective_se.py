"""Effective Squeeze-Excitation (Lee, Park, CenterMask / VoVNetV2, CVPR 2020)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from yolo_attn.nn.attention._common import LayerFactory
from yolo_attn.nn.attention._gates import Gate
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import Keywords, SameWidth


@register("EffectiveSELayer", "ESE", "eSE", rule=Keywords(SameWidth(signature="[c2, *args]"), ("channels", None)))
class EffectiveSE(nn.Module):
    """Effective Squeeze-Excitation (Lee, Park, "CenterMask: Real-Time Anchor-Free Instance Segmentation",
    CVPR 2020, arXiv:1911.06667; VoVNetV2's eSE).

    Global average pool, one full-width 1x1 conv (no channel reduction, so no information loss),
    ``gate_layer`` gate (hard sigmoid). A different block from :class:`~yolo_attn.nn.attention.se.SE`: no
    reduction, hence no ``rd_*`` arguments.

    YAML ``[c2]`` -> ``EffectiveSE(c1)`` (YOLOAir registers ``EffectiveSELayer`` like Conv; ``c2`` must equal
    ``c1``), e.g. ``[-1, 1, EffectiveSELayer, [1024]]``.
    """

    yaml_example: ClassVar[str] = "[-1, 1, EffectiveSE, [256]]"

    def __init__(self, channels: int, gate_layer: LayerFactory = nn.Hardsigmoid):
        super().__init__()
        self.fc = nn.Conv2d(channels, channels, 1)
        self.gate = Gate("channel", gate_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc(x.mean((2, 3), keepdim=True)))
