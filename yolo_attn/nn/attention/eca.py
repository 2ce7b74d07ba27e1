"""Efficient Channel Attention (Wang et al., CVPR 2020)."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from yolo_attn.nn.attention._common import WIDTH_THEN_ARGS
from yolo_attn.nn.attention._gates import GateRecorder
from yolo_attn.nn.registry import register


def eca_kernel_size(channels: int, gamma: int = 2, b: int = 1) -> int:
    """The paper's adaptive kernel size: the odd number nearest to ``log2(C) / gamma + b / gamma``."""
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


@register("ECAAttention", "eca_layer", rule=WIDTH_THEN_ARGS)
class ECA(GateRecorder, nn.Module):
    """Efficient Channel Attention (Wang, Wu, Zhu, Li, Zuo, Hu, "ECA-Net", CVPR 2020, arXiv:1910.03151;
    official code BangguWu/ECANet).

    Global average pool, a bias-free 1-D convolution across neighbouring channels, sigmoid gate.
    ``k_size=None`` uses the paper's adaptive size (``gamma=2, b=1``), e.g. 5 for 256 channels.

    YAML ``[c2, k_size=None]`` -> ``ECA(c1, k_size)`` (``c2`` = input channels after width gain),
    e.g. ``[-1, 1, ECA, [1024, 3]]``.
    """

    yaml_example: ClassVar[str] = "[-1, 1, ECA, [256, 3]]"

    def __init__(self, c1: int, k_size: int | None = None):
        super().__init__()
        k = eca_kernel_size(c1) if k_size is None else k_size
        self.conv = nn.Conv1d(1, 1, kernel_size=k, padding=(k - 1) // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x.mean((2, 3))[:, None, :])  # (b, 1, c): convolve along channels
        gate = y.sigmoid()[:, 0, :, None, None]
        self.record_gate("channel", gate)
        return x * gate
