"""BAM: Park, Woo, Lee, Kweon, "BAM: Bottleneck Attention Module", BMVC 2018 (arXiv 1807.06514)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from yolo_attn.nn.attention._common import check_same_width
from yolo_attn.nn.attention._gates import GateRecorder
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import SameWidth


@register(rule=SameWidth(signature="[c2=c1, reduction=16, dilation=4]"))
class BAM(GateRecorder, nn.Module):
    """Bottleneck Attention Module (Park et al., BMVC 2018, arXiv 1807.06514).
    YAML: ``[c2=c1, reduction=16, dilation=4]``.

    The published BAM: ``y = x * (1 + sigmoid(Mc(x) + Ms(x)))`` with a channel branch
    ``Mc = MLP(avgpool(x))`` (``c -> c/r -> c``) and a spatial branch ``Ms`` of a 1x1 reduction to
    ``c/r``, two 3x3 convs with dilation ``d`` (BatchNorm + ReLU after each) and a 1x1 conv to one map;
    ``Mc`` (b, c, 1, 1) and ``Ms`` (b, 1, h, w) broadcast to (b, c, h, w). Defaults r=16, d=4 are the
    paper's. The sum follows the paper (the official code multiplies the branches). The BatchNorm the
    official code puts in the channel MLP is left out: over one pooled vector per image it is undefined
    at batch size 1, which YOLO's stride probe and small-batch training use.

    Note: seed 001 (a YOLOv5/v7 attention tutorial) shows a CBAM-style channel-then-spatial stack
    under the name "BAM"; that module is :class:`~yolo_attn.nn.attention.cbam.CBAM` here, and ``BAM``
    is the paper's block. Example: ``[-1, 1, BAM, [256]]``.
    """

    yaml_example: ClassVar[str] = "[-1, 1, BAM, [256]]"

    def __init__(self, c1: int, c2: int | None = None, reduction: int = 16, dilation: int = 4):
        super().__init__()
        check_same_width(c1, c2)
        hidden = max(c1 // reduction, 1)
        self.channel_gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(c1, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, c1, 1)
        )
        dilated = []
        for _ in range(2):
            dilated += [
                nn.Conv2d(hidden, hidden, 3, padding=dilation, dilation=dilation),
                nn.BatchNorm2d(hidden),
                nn.ReLU(inplace=True),
            ]
        self.spatial_gate = nn.Sequential(
            nn.Conv2d(c1, hidden, 1), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True), *dilated, nn.Conv2d(hidden, 1, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channel, spatial = self.channel_gate(x), self.spatial_gate(x)
        if self.gates_wanted:  # each branch's own map, before the sum
            self.record_gate("channel", channel.sigmoid())
            self.record_gate("spatial", spatial.sigmoid())
        return x * (1 + torch.sigmoid(channel + spatial))


__all__ = ["BAM"]
