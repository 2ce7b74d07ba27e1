"""Triplet Attention (Misra, Nalamada, Arasanipalai, Hou, WACV 2021)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from yolo_attn.nn.attention._common import channel_mean_max
from yolo_attn.nn.attention._gates import GateRecorder
from yolo_attn.nn.registry import register


class _ZPoolGate(nn.Module):
    """Z-pool (max and mean over dim 1), 7x7 conv + BN to one map, sigmoid gate."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The sigmoid gate, ``(b, 1, d2, d3)``."""
        return self.bn(self.conv(channel_mean_max(x, max_first=True))).sigmoid()


@register()
class TripletAttention(GateRecorder, nn.Module):
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
        gates = [
            self.cw.gate(x.permute(0, 2, 1, 3)).permute(0, 2, 1, 3),  # (b, c, 1, w): over (C, W), pooled across H
            self.hc.gate(x.permute(0, 3, 2, 1)).permute(0, 3, 2, 1),  # (b, c, h, 1): over (H, C), pooled across W
        ]
        if self.hw is not None:
            gates.append(self.hw.gate(x))  # (b, 1, h, w)
        if self.gates_wanted:  # the branches' mean gate, which the output equals x times
            self.record_gate("spatial", sum(gates) / len(gates))
        return sum(x * g for g in gates) / len(gates)
