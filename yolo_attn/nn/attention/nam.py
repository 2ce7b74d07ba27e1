"""Normalization-based Attention Module (Liu et al., NeurIPS 2021 workshop)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from yolo_attn.nn.attention._common import LayerFactory
from yolo_attn.nn.attention._gates import Gate
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import Keywords, SameWidth


class NAMChannel(nn.Module):
    """NAM's channel branch: ``gate(BN(x) * |gamma| / sum |gamma|) * x`` (``bn2`` as YOLOAir names it)."""

    def __init__(self, channels: int, gate_layer: LayerFactory):
        super().__init__()
        self.bn2 = nn.BatchNorm2d(channels)
        self.gate = Gate("channel", gate_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gamma = self.bn2.weight.detach().abs()
        return x * self.gate(self.bn2(x) * (gamma / gamma.sum())[:, None, None])


@register("NAM", rule=Keywords(SameWidth(signature="[c2, *args]"), ("channels", None)))
class NAMAttention(nn.Module):
    """NAM channel attention (Liu, Shao, Wang, Zhang, "NAM: Normalization-based Attention Module",
    NeurIPS 2021 ImageNet PPF workshop, arXiv:2111.12419; official code Christian-lyc/NAM).

    BatchNorm, each channel scaled by its share of the BN scale factors ``|gamma_i| / sum |gamma|``
    (taken without gradient, as the official code does), ``gate_layer`` (sigmoid), times the input. The official
    module (and YOLOAir's) has only this channel branch. Sub-module names follow YOLOAir
    (``Channel_Att.bn2``), so its checkpoints load by key.

    YAML ``[c2]`` -> ``NAMAttention(c1)`` (YOLOAir registers it like Conv; ``c2`` must equal ``c1``),
    e.g. ``[-1, 1, NAMAttention, [1024]]``.
    """

    yaml_example: ClassVar[str] = "[-1, 1, NAMAttention, [256]]"

    def __init__(self, channels: int, gate_layer: LayerFactory = nn.Sigmoid):
        super().__init__()
        self.Channel_Att = NAMChannel(channels, gate_layer)  # YOLOAir's state_dict key

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.Channel_Att(x)
