"""Triplet Attention (Misra, Nalamada, Arasanipalai, Hou, WACV 2021)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from yolo_attn.nn.attention._common import LayerFactory, channel_mean_max
from yolo_attn.nn.attention._gates import Gate
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import PREPEND_INPUT, Keywords

# Each branch's rotation of (b, c, h, w); each is its own inverse.
CW, HC, HW = (0, 2, 1, 3), (0, 3, 2, 1), (0, 1, 2, 3)


class _ZPoolGate(nn.Module):
    """Z-pool (max and mean over dim 1 of the rotated tensor), conv + BN to one map, rotated back, gate."""

    def __init__(self, kernel_size: int, gate_layer: LayerFactory, rotation: tuple[int, int, int, int]):
        super().__init__()
        self.rotation = rotation
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1, momentum=0.01)
        self.gate = Gate("spatial", gate_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The branch's gate in the layout of ``x``: (b, c, 1, w), (b, c, h, 1) or (b, 1, h, w)."""
        logits = self.bn(self.conv(channel_mean_max(x.permute(self.rotation), max_first=True)))
        return self.gate(logits.permute(self.rotation))


@register(rule=Keywords(PREPEND_INPUT, ("channels", "no_spatial")))
class TripletAttention(nn.Module):
    """Triplet Attention (Misra, Nalamada, Arasanipalai, Hou, "Rotate to Attend: Convolutional Triplet Attention
    Module", WACV 2021, arXiv:2010.03045; official code landskape-ai/triplet-attention).

    Three Z-pool gates (``kernel_size`` convs, ``gate_layer`` sigmoid) on the (C, W), (H, C) and (H, W) planes,
    obtained by rotating the tensor, averaged; ``no_spatial`` drops the plain (H, W) branch. Works at any
    width: ``channels`` is unused.

    YAML ``[no_spatial=False]`` -> ``TripletAttention(c1, no_spatial=no_spatial)`` (channels kept),
    e.g. ``[-1, 1, TripletAttention, []]``.
    """

    yaml_example: ClassVar[str] = "[-1, 1, TripletAttention, []]"

    def __init__(
        self,
        channels: int | None = None,
        kernel_size: int = 7,
        gate_layer: LayerFactory = nn.Sigmoid,
        *,
        no_spatial: bool = False,
    ):
        super().__init__()
        self.cw = _ZPoolGate(kernel_size, gate_layer, CW)
        self.hc = _ZPoolGate(kernel_size, gate_layer, HC)
        self.hw = None if no_spatial else _ZPoolGate(kernel_size, gate_layer, HW)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.cw, self.hc] + ([self.hw] if self.hw is not None else [])
        return sum(x * branch(x) for branch in branches) / len(branches)
