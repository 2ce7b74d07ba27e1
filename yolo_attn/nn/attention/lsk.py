"""Large Selective Kernel block (Li et al., LSKNet, ICCV 2023)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from yolo_attn.nn.attention._common import LayerFactory, channel_mean_max, require_divisible
from yolo_attn.nn.attention._gates import Gate
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import PREPEND_INPUT, Keywords


@register("LSKblock", "LSKAttention", rule=Keywords(PREPEND_INPUT, ("channels",)))
class LSKBlock(nn.Module):
    """Large Selective Kernel block (Li, Hou, Wang, Zhang, Cheng, Yang, Li, "Large Selective Kernel Network for
    Remote Sensing Object Detection", ICCV 2023, arXiv:2303.09030; official code zcablii/LSKNet ``LSKblock``).

    A depthwise 5x5 conv and, on its output, a depthwise 7x7 conv with dilation 3 give two receptive
    fields; each is reduced to ``channels / 2``, a 7x7 conv over their channel mean and max and a ``gate_layer``
    gate (sigmoid) pick per-position weights for the two (spatial kernel selection), and a 1x1 conv maps back to
    the attention that multiplies the input.

    YAML ``[]`` -> ``LSKBlock(c1)`` (input width prepended), e.g. ``[-1, 1, LSKBlock, []]``.
    """

    yaml_example: ClassVar[str] = "[-1, 1, LSKBlock, []]"

    def __init__(self, channels: int, gate_layer: LayerFactory = nn.Sigmoid):
        super().__init__()
        require_divisible(channels, 2, "2")
        half = channels // 2
        self.conv0 = nn.Conv2d(channels, channels, 5, padding=2, groups=channels)
        self.conv_spatial = nn.Conv2d(channels, channels, 7, padding=9, groups=channels, dilation=3)
        self.conv1 = nn.Conv2d(channels, half, 1)
        self.conv2 = nn.Conv2d(channels, half, 1)
        self.conv_squeeze = nn.Conv2d(2, 2, 7, padding=3)
        self.gate = Gate("spatial", gate_layer)
        self.conv = nn.Conv2d(half, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        small = self.conv0(x)
        large = self.conv_spatial(small)
        small, large = self.conv1(small), self.conv2(large)
        select = self.gate(self.conv_squeeze(channel_mean_max(torch.cat((small, large), 1))))
        return x * self.conv(small * select[:, :1] + large * select[:, 1:])
