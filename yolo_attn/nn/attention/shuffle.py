"""Shuffle Attention (Zhang, Yang, ICASSP 2021)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from yolo_attn.nn.attention._common import WIDTH_THEN_ARGS, channel_shuffle, require_divisible
from yolo_attn.nn.registry import register


@register("sa_layer", rule=WIDTH_THEN_ARGS)
class ShuffleAttention(nn.Module):
    """Shuffle Attention (Zhang, Yang, "SA-Net: Shuffle Attention for Deep Convolutional Neural Networks",
    ICASSP 2021, arXiv:2102.00240; official code wofmanaf/SA-Net).

    Channels split into ``groups`` sub-features, each halved: a channel half gated by
    ``sigmoid(w * avgpool + b)``, a spatial half gated by ``sigmoid(w * GroupNorm(x) + b)``; the halves
    are concatenated and channel-shuffled. Needs ``c1`` divisible by ``2 * groups``.

    YAML ``[c2, groups=8]`` -> ``ShuffleAttention(c1, groups)`` (``c2`` = input channels after width
    gain; YOLOAir's default G=8), e.g. ``[-1, 1, ShuffleAttention, [1024]]``.
    """

    yaml_example: ClassVar[str] = "[-1, 1, ShuffleAttention, [256, 8]]"

    def __init__(self, c1: int, groups: int = 8):
        super().__init__()
        require_divisible(c1, 2 * groups, "2 * groups")
        self.groups = groups
        half = c1 // (2 * groups)
        self.gn = nn.GroupNorm(half, half)
        self.cweight = nn.Parameter(torch.zeros(1, half, 1, 1))
        self.cbias = nn.Parameter(torch.ones(1, half, 1, 1))
        self.sweight = nn.Parameter(torch.zeros(1, half, 1, 1))
        self.sbias = nn.Parameter(torch.ones(1, half, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x_channel, x_spatial = x.reshape(b * self.groups, -1, h, w).chunk(2, dim=1)
        x_channel = x_channel * (self.cweight * x_channel.mean((2, 3), keepdim=True) + self.cbias).sigmoid()
        x_spatial = x_spatial * (self.sweight * self.gn(x_spatial) + self.sbias).sigmoid()
        return channel_shuffle(torch.cat((x_channel, x_spatial), 1).reshape(b, c, h, w), 2)
