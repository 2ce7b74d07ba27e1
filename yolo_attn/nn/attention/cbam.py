"""CBAM: Woo et al., "CBAM: Convolutional Block Attention Module", ECCV 2018 (arXiv 1807.06521)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from yolo_attn.nn.attention._common import channel_mean_max, check_same_width
from yolo_attn.nn.attention._gates import GateRecorder
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import SameWidth


class ChannelAttention(nn.Module):
    """CBAM channel attention: ``sigmoid(MLP(avgpool(x)) + MLP(maxpool(x)))``, MLP = 1x1 convs without bias."""

    def __init__(self, channels: int, ratio: int = 16):
        super().__init__()
        hidden = max(channels // ratio, 1)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.max_pool = nn.AdaptiveMaxPool2d(1)
        self.f1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.relu = nn.ReLU()
        self.f2 = nn.Conv2d(hidden, channels, 1, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.f2(self.relu(self.f1(self.avg_pool(x))))
        peak = self.f2(self.relu(self.f1(self.max_pool(x))))
        return self.sigmoid(avg + peak)


class SpatialAttention(nn.Module):
    """CBAM spatial attention: ``sigmoid(conv_kxk([mean_c(x), max_c(x)]))``."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"spatial attention kernel_size must be odd, got {kernel_size}")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sigmoid(self.conv(channel_mean_max(x)))


@register(rule=SameWidth(signature="[c2=c1, ratio=16, kernel_size=7]"))
class CBAM(GateRecorder, nn.Module):
    """Convolutional Block Attention Module (Woo et al., ECCV 2018, arXiv 1807.06521).
    YAML: ``[c2=c1, ratio=16, kernel_size=7]``.

    Channel attention (shared bias-free MLP over average- and max-pooled features, ReLU), then
    spatial attention (a bias-free ``kernel_size`` conv over the channel mean and max); both
    multiply the features. ``state_dict`` keys: ``channel_attention.f1``/``f2``, ``spatial_attention.conv``.

    This is the CBAM of seed 001 (the paper's formulation), not the one YOLOAir's YAML builds
    (``models/Models/research.py``): YOLOAir's channel MLP is two ``nn.Linear`` layers with biases
    and a LeakyReLU(0.1) between them, and its 7x7 spatial conv has a bias too. So YOLOAir's CBAM has
    ``c1 // ratio + c1 + 1`` more parameters (8,563 instead of 8,290 at 256 channels, 679 instead of
    610 at 64), different keys (``shared_MLP.0``/``.2``, ``conv2d``) and different outputs; its
    checkpoints do not load here. (YOLOAir's second, unused CBAM in ``muitlbackbone.py`` is the
    bias-free one, with keys ``fc1``/``fc2``/``conv1``.)
    Example: ``[-1, 1, CBAM, [1024]]`` (``c2`` is width-scaled and must equal the input channels).
    """

    yaml_example: ClassVar[str] = "[-1, 1, CBAM, [256]]"

    def __init__(self, c1: int, c2: int | None = None, ratio: int = 16, kernel_size: int = 7):
        super().__init__()
        check_same_width(c1, c2)
        self.channel_attention = ChannelAttention(c1, ratio)
        self.spatial_attention = SpatialAttention(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channel = self.channel_attention(x)
        self.record_gate("channel", channel)
        x = channel * x
        spatial = self.spatial_attention(x)
        self.record_gate("spatial", spatial)
        return spatial * x


__all__ = ["CBAM", "ChannelAttention", "SpatialAttention"]
