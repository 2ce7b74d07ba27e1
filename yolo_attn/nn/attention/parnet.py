"""ParNet attention: RepVGG-style block with Skip-Squeeze-Excitation (Goyal et al., NeurIPS 2022)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from yolo_attn.nn.attention._common import LayerFactory
from yolo_attn.nn.attention._gates import Gate
from yolo_attn.nn.blocks.conv import Conv
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import Keywords, LiteralChannels


@register("ParNetBlock", rule=Keywords(LiteralChannels((0,)), ("channels",)))
class ParNetAttention(nn.Module):
    """ParNet block with Skip-Squeeze-Excitation (Goyal, Bochkovskiy, Deng, Koltun, "Non-deep Networks",
    NeurIPS 2022, arXiv:2110.07641; official code imankgoyal/NonDeepNetworks).

    ``y = act(BN(conv1x1(x)) + BN(conv3x3(x)) + SSE(x))`` (``act_layer``: SiLU) where the SSE skip branch is
    ``BN(x) * gate(conv1x1(avgpool(BN(x))))`` (``gate_layer``: sigmoid) as in the paper.

    YAML ``[c1]`` -> ``ParNetAttention(c1)`` (args as written, as in YOLOAir: ``c1`` is the real input
    channel count), e.g. ``[-1, 1, ParNetAttention, [512]]``.
    """

    yaml_example: ClassVar[str] = "[-1, 1, ParNetAttention, [256]]"

    def __init__(self, channels: int, act_layer: LayerFactory = nn.SiLU, gate_layer: LayerFactory = nn.Sigmoid):
        super().__init__()
        self.conv1x1 = Conv(channels, channels, 1, act=False)
        self.conv3x3 = Conv(channels, channels, 3, act=False)
        self.sse_bn = nn.BatchNorm2d(channels)
        self.sse_fc = nn.Conv2d(channels, channels, 1)
        self.sse_gate = Gate("channel", gate_layer)
        self.act = act_layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.sse_bn(x)
        skip = skip * self.sse_gate(self.sse_fc(skip.mean((2, 3), keepdim=True)))
        return self.act(self.conv1x1(x) + self.conv3x3(x) + skip)
