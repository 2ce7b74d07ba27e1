"""Effective Squeeze-Excitation (Lee, Park, CenterMask / VoVNetV2, CVPR 2020)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from yolo_attn.nn.attention._common import check_same_width
from yolo_attn.nn.attention._gates import GateRecorder
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import CONV


@register("EffectiveSELayer", "ESE", "eSE", rule=CONV)
class EffectiveSE(GateRecorder, nn.Module):
    """Effective Squeeze-Excitation (Lee, Park, "CenterMask: Real-Time Anchor-Free Instance Segmentation",
    CVPR 2020, arXiv:1911.06667; VoVNetV2's eSE).

    Global average pool, one full-width 1x1 conv (no channel reduction, so no information loss),
    hard-sigmoid gate.

    YAML ``[c2]`` -> ``EffectiveSE(c1, c2)`` (YOLOAir registers ``EffectiveSELayer`` like Conv; ``c2``
    must equal ``c1``), e.g. ``[-1, 1, EffectiveSELayer, [1024]]``.
    """

    yaml_example: ClassVar[str] = "[-1, 1, EffectiveSE, [256]]"

    def __init__(self, c1: int, c2: int | None = None):
        super().__init__()
        check_same_width(c1, c2)
        self.fc = nn.Conv2d(c1, c1, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.gate(self.fc(x.mean((2, 3), keepdim=True)))
        self.record_gate("channel", gate)
        return x * gate
