"""Dual Attention Network: position and channel attention (Fu et al., CVPR 2019)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from yolo_attn.nn.attention._common import check_same_width, require_divisible
from yolo_attn.nn.blocks.conv import Conv
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import LiteralChannels


class PositionAttention(nn.Module):
    """DANet's PAM: self-attention over positions, query/key at ``c // 8``, ``gamma * out + x`` (gamma from 0)."""

    def __init__(self, c: int):
        super().__init__()
        self.query_conv = nn.Conv2d(c, max(c // 8, 1), 1)
        self.key_conv = nn.Conv2d(c, max(c // 8, 1), 1)
        self.value_conv = nn.Conv2d(c, c, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.query_conv(x).flatten(2), self.key_conv(x).flatten(2), self.value_conv(x).flatten(2)
        attention = (q.transpose(1, 2) @ k).softmax(-1)  # (b, n, n)
        return self.gamma * (v @ attention.transpose(1, 2)).view_as(x) + x


class ChannelAttention(nn.Module):
    """DANet's CAM: channel affinity ``max(E) - E`` softmaxed, ``gamma * out + x`` (gamma from 0)."""

    def __init__(self):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)
        energy = flat @ flat.transpose(1, 2)  # (b, c, c)
        attention = (energy.amax(-1, keepdim=True) - energy).softmax(-1)
        return self.gamma * (attention @ flat).view_as(x) + x


@register("DAModule", "DualAttention", rule=LiteralChannels((0, 1)))
class DANet(nn.Module):
    """Dual attention (Fu, Liu, Tian, Li, Bao, Fang, Lu, "Dual Attention Network for Scene Segmentation",
    CVPR 2019, arXiv:1809.02983; official code junfu1115/DANet ``DANetHead``).

    The DANet head with ``out_channels = c1``: two 3x3 conv-BN-ReLU reductions to ``c1 / 4``, position
    attention (PAM) on one and channel attention (CAM) on the other, a 3x3 conv-BN-ReLU after each,
    element-wise sum, and a 1x1 conv back to ``c1`` (the head's dropout before it is left out).

    YAML ``[c1, c2=c1]`` -> ``DANet(c1, c2)`` (args as written, as in YOLOAir; the block keeps its
    channels), e.g. ``[-1, 1, DANet, [512, 512]]``.
    """

    yaml_example: ClassVar[str] = "[-1, 1, DANet, [256, 256]]"

    def __init__(self, c1: int, c2: int | None = None):
        super().__init__()
        check_same_width(c1, c2)
        require_divisible(c1, 4, "4")
        inter = c1 // 4
        self.conv5a = Conv(c1, inter, 3, act=nn.ReLU())
        self.conv5c = Conv(c1, inter, 3, act=nn.ReLU())
        self.sa = PositionAttention(inter)
        self.sc = ChannelAttention()
        self.conv51 = Conv(inter, inter, 3, act=nn.ReLU())
        self.conv52 = Conv(inter, inter, 3, act=nn.ReLU())
        self.conv8 = nn.Conv2d(inter, c1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        position = self.conv51(self.sa(self.conv5a(x)))
        channel = self.conv52(self.sc(self.conv5c(x)))
        return self.conv8(position + channel)
