"""Selective Kernel attention (Li, Wang, Hu, Yang, CVPR 2019)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from yolo_attn.nn.attention._common import WIDTH_THEN_ARGS, LayerFactory, hidden_channels, reduction_as_ratio
from yolo_attn.nn.blocks.conv import Conv
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import Keywords


class SKBranch(Conv):
    """Conv-BN-activation branch whose convolution keeps its bias although BN follows, as YOLOAir's
    ``SKAttention`` (``nn.Conv2d`` default); folded into one biased conv by ``fuse()``."""

    def __init__(self, c: int, k: int, group: int, act: nn.Module):
        super().__init__(c, c, k, 1, None, group, act=act)
        self.conv = nn.Conv2d(c, c, k, 1, k // 2, groups=group)


SK_RULE = Keywords(
    WIDTH_THEN_ARGS, ("channels", "kernels", "reduction", "groups", "min_rd_channels"), reduction_as_ratio
)


@register("SKConv", rule=SK_RULE)
class SKAttention(nn.Module):
    """Selective Kernel attention (Li, Wang, Hu, Yang, "Selective Kernel Networks", CVPR 2019, arXiv:1903.06586).

    Split: one conv-BN-``act_layer`` (ReLU) branch per kernel size (``groups`` groups). Fuse: sum the branches,
    global average pool, ``fc`` to ``d = max(L, channels * rd_ratio)`` (``L``: ``min_rd_channels``). Select: one
    ``fc`` per branch, softmax across branches, weighted sum. Layout, keys, parameters and outputs are YOLOAir's
    ``SKAttention``: its branch convolutions have biases (``channels`` extra parameters per branch, redundant
    before BN), and the defaults are its kernels 1/3/5/7, groups 1; the example uses the paper's two branches
    (3x3 and 5x5).

    YAML ``[c2, kernels=[1, 3, 5, 7], reduction=16, group=1, L=32]`` -> ``SKAttention(c1, rd_ratio=1/reduction,
    kernels=..., groups=group, min_rd_channels=L)`` (``c2`` = input channels after width gain),
    e.g. ``[-1, 1, SKAttention, [1024]]``.
    """

    yaml_example: ClassVar[str] = "[-1, 1, SKAttention, [256, [3, 5], 16, 1, 32]]"

    def __init__(
        self, channels: int, rd_ratio: float = 1 / 16, rd_channels: int | None = None, rd_divisor: int = 1,
        act_layer: LayerFactory = nn.ReLU, *,
        kernels: Sequence[int] = (1, 3, 5, 7), groups: int = 1, min_rd_channels: int = 32,
    ):
        super().__init__()
        d = hidden_channels(channels, rd_ratio, rd_channels, rd_divisor, min_channels=min_rd_channels)
        self.convs = nn.ModuleList(SKBranch(channels, k, groups, act_layer()) for k in kernels)
        self.fc = nn.Linear(channels, d)
        self.fcs = nn.ModuleList(nn.Linear(d, channels) for _ in kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [conv(x) for conv in self.convs]
        feats = torch.stack(outs)  # (k, b, c, h, w)
        z = self.fc(sum(outs).mean(-1).mean(-1))  # summed and pooled in YOLOAir's order
        weights = torch.stack([fc(z) for fc in self.fcs]).softmax(0)  # (k, b, c)
        return (weights[..., None, None] * feats).sum(0)
