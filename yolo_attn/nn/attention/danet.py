"""Dual Attention Network: position and channel attention (Fu et al., CVPR 2019)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from yolo_attn.nn.attention._common import LayerFactory, hidden_channels
from yolo_attn.nn.blocks.conv import Conv
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import Keywords, LiteralChannels

PAM_RD_RATIO = 1 / 8  # the official PAM_Module's query/key width ``in_dim // 8``


class PositionAttention(nn.Module):
    """DANet's PAM: self-attention over positions, query/key at ``c / 8``, ``gamma * out + x`` (gamma from 0)."""

    def __init__(self, c: int):
        super().__init__()
        hidden = hidden_channels(c, PAM_RD_RATIO)
        self.query_conv = nn.Conv2d(c, hidden, 1)
        self.key_conv = nn.Conv2d(c, hidden, 1)
        self.value_conv = nn.Conv2d(c, c, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.query_conv(x).flatten(2), self.key_conv(x).flatten(2), self.value_conv(x).flatten(2)
        attention = (q.transpose(1, 2) @ k).softmax(-1)  # (b, n, n)
        return self.gamma * (v @ attention.transpose(1, 2)).view_as(x) + x


class ChannelAttentionModule(nn.Module):
    """DANet's CAM: channel affinity ``max(E) - E`` softmaxed, ``gamma * out + x`` (gamma from 0)."""

    def __init__(self):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)
        energy = flat @ flat.transpose(1, 2)  # (b, c, c)
        attention = (energy.amax(-1, keepdim=True) - energy).softmax(-1)
        return self.gamma * (attention @ flat).view_as(x) + x


@register("DAModule", "DualAttention", rule=Keywords(LiteralChannels((0, 1)), ("channels", None)))
class DANet(nn.Module):
    """Dual attention (Fu, Liu, Tian, Li, Bao, Fang, Lu, "Dual Attention Network for Scene Segmentation",
    CVPR 2019, arXiv:1809.02983; official code junfu1115/DANet ``DANetHead``).

    The DANet head with ``out_channels = channels``: two 3x3 conv-BN-``act_layer`` (ReLU) reductions to
    ``channels * rd_ratio`` (1/4), position attention (PAM) on one and channel attention (CAM) on the other, a
    3x3 conv-BN-``act_layer`` after each, element-wise sum, and a 1x1 conv back to ``channels`` (the head's
    dropout before it is left out).

    YAML ``[c1, c2=c1]`` -> ``DANet(c1)`` (args as written, as in YOLOAir; the block keeps its
    channels), e.g. ``[-1, 1, DANet, [512, 512]]``.
    """

    yaml_example: ClassVar[str] = "[-1, 1, DANet, [256, 256]]"

    def __init__(
        self, channels: int, rd_ratio: float = 1 / 4, rd_channels: int | None = None, rd_divisor: int = 1,
        act_layer: LayerFactory = nn.ReLU,
    ):
        super().__init__()
        inter = hidden_channels(channels, rd_ratio, rd_channels, rd_divisor)
        self.conv5a = Conv(channels, inter, 3, act=act_layer())
        self.conv5c = Conv(channels, inter, 3, act=act_layer())
        self.sa = PositionAttention(inter)
        self.sc = ChannelAttentionModule()
        self.conv51 = Conv(inter, inter, 3, act=act_layer())
        self.conv52 = Conv(inter, inter, 3, act=act_layer())
        self.conv8 = nn.Conv2d(inter, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        position = self.conv51(self.sa(self.conv5a(x)))
        channel = self.conv52(self.sc(self.conv5c(x)))
        return self.conv8(position + channel)
