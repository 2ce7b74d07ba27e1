"""Normalization-based Attention Module (Liu et al., NeurIPS 2021 workshop)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from yolo_attn.nn.attention._common import check_same_width
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import CONV


class NAMChannel(nn.Module):
    """NAM's channel branch: ``sigmoid(BN(x) * |gamma| / sum |gamma|) * x`` (``bn2`` as YOLOAir names it)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gamma = self.bn2.weight.detach().abs()
        return x * (self.bn2(x) * (gamma / gamma.sum())[:, None, None]).sigmoid()


@register("NAM", rule=CONV)
class NAMAttention(nn.Module):
    """NAM channel attention (Liu, Shao, Wang, Zhang, "NAM: Normalization-based Attention Module",
    NeurIPS 2021 ImageNet PPF workshop, arXiv:2111.12419; official code Christian-lyc/NAM).

    BatchNorm, each channel scaled by its share of the BN scale factors ``|gamma_i| / sum |gamma|``
    (taken without gradient, as the official code does), sigmoid, times the input. The official
    module (and YOLOAir's) has only this channel branch. Sub-module names follow YOLOAir
    (``Channel_Att.bn2``), so its checkpoints load by key.

    YAML ``[c2]`` -> ``NAMAttention(c1, c2)`` (YOLOAir registers it like Conv; ``c2`` must equal ``c1``),
    e.g. ``[-1, 1, NAMAttention, [1024]]``.
    """

    yaml_example: ClassVar[str] = "[-1, 1, NAMAttention, [256]]"

    def __init__(self, c1: int, c2: int | None = None):
        super().__init__()
        check_same_width(c1, c2)
        self.Channel_Att = NAMChannel(c1)  # YOLOAir's state_dict key

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.Channel_Att(x)
