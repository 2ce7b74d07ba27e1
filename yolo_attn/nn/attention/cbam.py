"""CBAM: Woo et al., "CBAM: Convolutional Block Attention Module", ECCV 2018 (arXiv 1807.06521)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from yolo_attn.nn.attention._common import LayerFactory, channel_mean_max, hidden_channels, reduction_as_ratio
from yolo_attn.nn.attention._gates import Gate
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import Keywords, SameWidth


class ChannelAttention(nn.Module):
    """CBAM channel attention: ``gate(MLP(avgpool(x)) + MLP(maxpool(x)))``, MLP = 1x1 convs without bias."""

    def __init__(self, channels: int, hidden: int, act_layer: LayerFactory, gate_layer: LayerFactory):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.max_pool = nn.AdaptiveMaxPool2d(1)
        self.f1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.act = act_layer()
        self.f2 = nn.Conv2d(hidden, channels, 1, bias=False)
        self.gate = Gate("channel", gate_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.f2(self.act(self.f1(self.avg_pool(x))))
        peak = self.f2(self.act(self.f1(self.max_pool(x))))
        return self.gate(avg + peak)


class SpatialAttention(nn.Module):
    """CBAM spatial attention: ``gate(conv_kxk([mean_c(x), max_c(x)]))``."""

    def __init__(self, kernel_size: int, gate_layer: LayerFactory):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"spatial attention kernel_size must be odd, got {kernel_size}")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.gate = Gate("spatial", gate_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(self.conv(channel_mean_max(x)))


CBAM_RULE = Keywords(
    SameWidth(signature="[c2=c1, ratio=16, kernel_size=7]"), ("channels", None, "reduction", "kernel_size"),
    reduction_as_ratio,
)


@register(rule=CBAM_RULE)
class CBAM(nn.Module):
    """Convolutional Block Attention Module (Woo et al., ECCV 2018, arXiv 1807.06521).
    YAML: ``[c2=c1, ratio=16, kernel_size=7]`` -> ``CBAM(c1, rd_ratio=1/ratio, kernel_size=kernel_size)``.

    Channel attention (shared bias-free MLP over average- and max-pooled features, ``act_layer`` ReLU), then
    spatial attention (a bias-free ``kernel_size`` conv over the channel mean and max); both gates
    (``gate_layer``, sigmoid) multiply the features. ``state_dict`` keys: ``channel_attention.f1``/``f2``,
    ``spatial_attention.conv``. The hidden width is ``channels * rd_ratio``, at least 1.

    This is the CBAM of the post "YOLOv5/v7 添加注意力机制,30多种模块分析②,BAM模块,CBAM模块" (adding
    attention to YOLOv5/v7, 30+ modules analysed ②: the BAM and CBAM modules), the paper's formulation, not the
    one YOLOAir's YAML builds
    (``models/Models/research.py``): YOLOAir's channel MLP is two ``nn.Linear`` layers with biases
    and a LeakyReLU(0.1) between them, and its 7x7 spatial conv has a bias too. So YOLOAir's CBAM has
    ``c1 // ratio + c1 + 1`` more parameters (8,563 instead of 8,290 at 256 channels, 679 instead of
    610 at 64), different keys (``shared_MLP.0``/``.2``, ``conv2d``) and different outputs; its
    checkpoints do not load here. (YOLOAir's second, unused CBAM in ``muitlbackbone.py`` is the
    bias-free one, with keys ``fc1``/``fc2``/``conv1``.)
    Example: ``[-1, 1, CBAM, [1024]]`` (``c2`` is width-scaled and must equal the input channels).
    """

    yaml_example: ClassVar[str] = "[-1, 1, CBAM, [256]]"

    def __init__(
        self, channels: int, rd_ratio: float = 1 / 16, rd_channels: int | None = None, rd_divisor: int = 1,
        kernel_size: int = 7, act_layer: LayerFactory = nn.ReLU, gate_layer: LayerFactory = nn.Sigmoid,
    ):
        super().__init__()
        hidden = hidden_channels(channels, rd_ratio, rd_channels, rd_divisor)
        self.channel_attention = ChannelAttention(channels, hidden, act_layer, gate_layer)
        self.spatial_attention = SpatialAttention(kernel_size, gate_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.channel_attention(x) * x
        return self.spatial_attention(x) * x


__all__ = ["CBAM", "ChannelAttention", "SpatialAttention"]
