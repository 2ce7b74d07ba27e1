"""Efficient Channel Attention (Wang et al., CVPR 2020)."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from yolo_attn.nn.attention._common import WIDTH_THEN_ARGS, LayerFactory
from yolo_attn.nn.attention._gates import Gate
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import Keywords


def eca_kernel_size(channels: int, gamma: int = 2, b: int = 1) -> int:
    """The paper's adaptive kernel size: the odd number nearest to ``log2(C) / gamma + b / gamma``."""
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


@register("ECAAttention", "eca_layer", rule=Keywords(WIDTH_THEN_ARGS, ("channels", "kernel_size")))
class ECA(nn.Module):
    """Efficient Channel Attention (Wang, Wu, Zhu, Li, Zuo, Hu, "ECA-Net", CVPR 2020, arXiv:1910.03151;
    official code BangguWu/ECANet).

    Global average pool, a bias-free 1-D convolution across neighbouring channels, ``gate_layer`` gate
    (sigmoid). ``kernel_size=None`` uses the paper's adaptive size (``gamma=2, b=1``), e.g. 5 for 256 channels.

    YAML ``[c2, k_size=None]`` -> ``ECA(c1, kernel_size=k_size)`` (``c2`` = input channels after width gain),
    e.g. ``[-1, 1, ECA, [1024, 3]]``.
    """

    yaml_example: ClassVar[str] = "[-1, 1, ECA, [256, 3]]"

    def __init__(self, channels: int, kernel_size: int | None = None, gate_layer: LayerFactory = nn.Sigmoid):
        super().__init__()
        k = eca_kernel_size(channels) if kernel_size is None else kernel_size
        self.conv = nn.Conv1d(1, 1, kernel_size=k, padding=(k - 1) // 2, bias=False)
        self.gate = Gate("channel", gate_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x.mean((2, 3))[:, None, :])  # (b, 1, c): convolve along channels
        return x * self.gate(y[:, 0, :, None, None])
