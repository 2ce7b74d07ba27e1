"""Squeeze-and-Excitation (Hu, Shen, Sun, CVPR 2018)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from yolo_attn.nn.attention._common import WIDTH_THEN_ARGS, reduced_channels
from yolo_attn.nn.attention._gates import GateRecorder
from yolo_attn.nn.registry import register


@register("SEAttention", "SELayer", rule=WIDTH_THEN_ARGS)
class SE(GateRecorder, nn.Module):
    """Squeeze-and-Excitation (Hu, Shen, Sun, "Squeeze-and-Excitation Networks", CVPR 2018, arXiv:1709.01507).

    Global average pool, a bias-free two-layer MLP with reduction ``reduction`` and a sigmoid gate
    per channel (as YOLOAir's ``SEAttention``).

    YAML ``[c2, reduction=16]`` -> ``SE(c1, reduction)`` (YOLOAir's attention convention: ``c2`` is the
    width-scaled channel count and must equal the input's), e.g. ``[-1, 1, SE, [1024, 16]]``.
    """

    yaml_example: ClassVar[str] = "[-1, 1, SE, [256, 16]]"

    def __init__(self, c1: int, reduction: int = 16):
        super().__init__()
        hidden = reduced_channels(c1, reduction)
        self.fc = nn.Sequential(
            nn.Linear(c1, hidden, bias=False), nn.ReLU(inplace=True), nn.Linear(hidden, c1, bias=False), nn.Sigmoid()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc(x.mean((2, 3)))
        self.record_gate("channel", gate)
        return x * gate[..., None, None]
