"""Shuffle Attention (Zhang, Yang, ICASSP 2021)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from yolo_attn.nn.attention._common import WIDTH_THEN_ARGS, LayerFactory, require_divisible
from yolo_attn.nn.attention._gates import Gate
from yolo_attn.nn.blocks.yoloair_shuffle import channel_shuffle
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import Keywords


@register("sa_layer", rule=Keywords(WIDTH_THEN_ARGS, ("channels", "groups")))
class ShuffleAttention(nn.Module):
    """Shuffle Attention (Zhang, Yang, "SA-Net: Shuffle Attention for Deep Convolutional Neural Networks",
    ICASSP 2021, arXiv:2102.00240; official code wofmanaf/SA-Net).

    Channels split into ``groups`` sub-features, each halved: a channel half gated by
    ``gate(w * avgpool + b)``, a spatial half gated by ``gate(w * GroupNorm(x) + b)`` (``gate_layer``: sigmoid);
    the halves are concatenated and channel-shuffled. Needs ``channels`` divisible by ``2 * groups``.

    YAML ``[c2, groups=8]`` -> ``ShuffleAttention(c1, groups=groups)`` (``c2`` = input channels after width
    gain; YOLOAir's default G=8), e.g. ``[-1, 1, ShuffleAttention, [1024]]``.
    """

    yaml_example: ClassVar[str] = "[-1, 1, ShuffleAttention, [256, 8]]"

    def __init__(self, channels: int, gate_layer: LayerFactory = nn.Sigmoid, *, groups: int = 8):
        super().__init__()
        require_divisible(channels, 2 * groups, "2 * groups")
        self.groups = groups
        half = channels // (2 * groups)
        self.gn = nn.GroupNorm(half, half)
        self.cweight = nn.Parameter(torch.zeros(1, half, 1, 1))
        self.cbias = nn.Parameter(torch.ones(1, half, 1, 1))
        self.sweight = nn.Parameter(torch.zeros(1, half, 1, 1))
        self.sbias = nn.Parameter(torch.ones(1, half, 1, 1))
        self.channel_gate = Gate("channel", gate_layer)
        self.spatial_gate = Gate("spatial", gate_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x_channel, x_spatial = x.reshape(b * self.groups, -1, h, w).chunk(2, dim=1)
        channel_logits = self.cweight * x_channel.mean((2, 3), keepdim=True) + self.cbias  # (b*g, c/2g, 1, 1)
        spatial_logits = self.sweight * self.gn(x_spatial) + self.sbias  # (b*g, c/2g, h, w)
        # gated as (b, c/2, ...): the gates in the batch layout of the features (the groups' halves side by side)
        x_channel = x_channel * self.channel_gate(channel_logits.reshape(b, -1, 1, 1)).view_as(channel_logits)
        x_spatial = x_spatial * self.spatial_gate(spatial_logits.reshape(b, -1, h, w)).view_as(spatial_logits)
        return channel_shuffle(torch.cat((x_channel, x_spatial), 1).reshape(b, c, h, w), 2)
