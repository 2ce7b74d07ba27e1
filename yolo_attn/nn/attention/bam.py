"""BAM: Park, Woo, Lee, Kweon, "BAM: Bottleneck Attention Module", BMVC 2018 (arXiv 1807.06514)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from yolo_attn.nn.attention._common import LayerFactory, hidden_channels, pointwise_mlp, reduction_as_ratio
from yolo_attn.nn.attention._gates import Gate
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import Keywords, SameWidth

BAM_RULE = Keywords(
    SameWidth(signature="[c2=c1, reduction=16, dilation=4]"), ("channels", None, "reduction", "dilation"),
    reduction_as_ratio,
)


@register(rule=BAM_RULE)
class BAM(nn.Module):
    """Bottleneck Attention Module (Park et al., BMVC 2018, arXiv 1807.06514).
    YAML: ``[c2=c1, reduction=16, dilation=4]`` -> ``BAM(c1, rd_ratio=1/reduction, dilation=dilation)``.

    The published BAM: ``y = x * (1 + gate(Mc(x) + Ms(x)))`` with a channel branch
    ``Mc = MLP(avgpool(x))`` (``c -> c * rd_ratio -> c``) and a spatial branch ``Ms`` of a 1x1 reduction to
    the same width, two 3x3 convs with dilation ``d`` (BatchNorm + ``act_layer`` after each) and a 1x1 conv to
    one map; ``Mc`` (b, c, 1, 1) and ``Ms`` (b, 1, h, w) broadcast to the 3-D attention map (b, c, h, w) the
    ``gate_layer`` gate (sigmoid) makes. Defaults r=16, d=4 are the paper's. The sum follows the paper (the
    official code multiplies the branches). The BatchNorm the official code puts in the channel MLP is left
    out: over one pooled vector per image it is undefined at batch size 1, which YOLO's stride probe and
    small-batch training use.

    Note: the post "YOLOv5/v7 添加注意力机制,30多种模块分析②,BAM模块,CBAM模块" (adding attention to
    YOLOv5/v7, 30+ modules analysed ②: the BAM and CBAM modules) shows a CBAM-style channel-then-spatial stack
    under the name "BAM"; that module is :class:`~yolo_attn.nn.attention.cbam.CBAM` here, and ``BAM`` is the
    paper's block. Example: ``[-1, 1, BAM, [256]]``.
    """

    yaml_example: ClassVar[str] = "[-1, 1, BAM, [256]]"

    def __init__(
        self, channels: int, rd_ratio: float = 1 / 16, rd_channels: int | None = None, rd_divisor: int = 1,
        act_layer: LayerFactory = nn.ReLU, gate_layer: LayerFactory = nn.Sigmoid, *, dilation: int = 4,
    ):
        super().__init__()
        hidden = hidden_channels(channels, rd_ratio, rd_channels, rd_divisor)
        self.channel_gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), *pointwise_mlp(channels, hidden, act_layer))
        dilated = []
        for _ in range(2):
            dilated += [
                nn.Conv2d(hidden, hidden, 3, padding=dilation, dilation=dilation),
                nn.BatchNorm2d(hidden),
                act_layer(),
            ]
        self.spatial_gate = nn.Sequential(
            nn.Conv2d(channels, hidden, 1), nn.BatchNorm2d(hidden), act_layer(), *dilated, nn.Conv2d(hidden, 1, 1)
        )
        self.gate = Gate("spatial", gate_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (1 + self.gate(self.channel_gate(x) + self.spatial_gate(x)))


__all__ = ["BAM"]
