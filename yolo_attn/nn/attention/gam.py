"""GAM: Liu et al., "Global Attention Mechanism: Retain Information to Enhance Channel-Spatial
Interactions", arXiv 2112.05561 (2021)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from yolo_attn.nn.attention._common import channel_shuffle, check_same_width
from yolo_attn.nn.attention._gates import GateRecorder
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import SameWidth

SHUFFLE_GROUPS = 4  # the seed (and YOLOAir) shuffle with 4 groups whatever ``rate`` is


@register(rule=SameWidth(signature="[c2=c1, group=True, rate=4]"))
class GAMAttention(GateRecorder, nn.Module):
    """Global Attention Mechanism (Liu, Shao, Hoffmann, 2021, arXiv 2112.05561). YAML: ``[c2=c1, group=True, rate=4]``.

    As seed 000 and YOLOAir implement it: a channel MLP (``c -> c/rate -> c``) on the permuted
    ``(b, h*w, c)`` tensor multiplies the features (no sigmoid on this branch, unlike the paper's
    figure); the spatial branch is two 7x7 convs (``groups=rate`` when ``group``) with BatchNorm and
    ReLU between, BatchNorm, sigmoid and a final channel shuffle (4 groups) before multiplying.
    Example: ``[-3, 1, GAMAttention, [128]]`` (``c2`` width-scaled, must equal the input channels).
    """

    yaml_example: ClassVar[str] = "[-1, 1, GAMAttention, [256]]"

    def __init__(self, c1: int, c2: int | None = None, group: bool = True, rate: int = 4):
        super().__init__()
        check_same_width(c1, c2)
        hidden = c1 // rate
        groups = rate if group else 1
        self.channel_attention = nn.Sequential(
            nn.Linear(c1, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, c1)
        )
        self.spatial_attention = nn.Sequential(
            nn.Conv2d(c1, hidden, 7, padding=3, groups=groups),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, c1, 7, padding=3, groups=groups),
            nn.BatchNorm2d(c1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channel_weights = self.channel_attention(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        self.record_gate("channel", channel_weights)
        x = x * channel_weights
        spatial_weights = channel_shuffle(self.spatial_attention(x).sigmoid(), SHUFFLE_GROUPS)
        self.record_gate("spatial", spatial_weights)
        return x * spatial_weights


__all__ = ["GAMAttention"]
