"""S2-MLPv2 spatial-shift attention (Yu, Xu, Zhang, Li, Wang, 2021)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from yolo_attn.nn.attention._common import WIDTH_THEN_ARGS
from yolo_attn.nn.registry import register


def _shift(x: torch.Tensor, dim: int, forward: bool) -> torch.Tensor:
    """Shift by one position along ``dim``; the border row/column keeps its own value (as in S2-MLP)."""
    n = x.shape[dim]
    if forward:
        return torch.cat((x.narrow(dim, 0, 1), x.narrow(dim, 0, n - 1)), dim)
    return torch.cat((x.narrow(dim, 1, n - 1), x.narrow(dim, n - 1, 1)), dim)


def spatial_shift(x: torch.Tensor, first_dim: int) -> torch.Tensor:
    """Channel quarters of (b, h, w, c) shifted +/- along ``first_dim`` then +/- along the other axis."""
    second_dim = 3 - first_dim
    c = x.shape[-1]
    bounds = [0, c // 4, c // 2, 3 * c // 4, c]
    quarters = x.split([hi - lo for lo, hi in zip(bounds, bounds[1:])], dim=-1)
    return torch.cat(
        (
            _shift(quarters[0], first_dim, True),
            _shift(quarters[1], first_dim, False),
            _shift(quarters[2], second_dim, True),
            _shift(quarters[3], second_dim, False),
        ),
        -1,
    )


class SplitAttention(nn.Module):
    """Split attention over ``k`` branches (ViP / ResNeSt style): pooled sum -> MLP -> softmax over branches."""

    def __init__(self, c: int, k: int = 3):
        super().__init__()
        self.k = k
        self.mlp1 = nn.Linear(c, c, bias=False)
        self.gelu = nn.GELU()
        self.mlp2 = nn.Linear(c, c * k, bias=False)

    def forward(self, branches: torch.Tensor) -> torch.Tensor:
        """(b, k, h, w, c) -> (b, h, w, c)."""
        b, k, h, w, c = branches.shape
        pooled = branches.sum(1).mean((1, 2))  # (b, c)
        weights = self.mlp2(self.gelu(self.mlp1(pooled))).view(b, k, 1, 1, c).softmax(1)
        return (weights * branches).sum(1)


@register("S2MLPv2", rule=WIDTH_THEN_ARGS)
class S2Attention(nn.Module):
    """S2-MLPv2 attention (Yu, Xu, Zhang, Li, Wang, "S2-MLPv2: Improved Spatial-Shift MLP Architecture for
    Vision", arXiv:2108.01072, 2021).

    A linear layer expands channels 3x; the first third is spatially shifted one way, the second the
    transposed way, the third kept; split attention mixes the three, a linear layer projects back.
    The shift is out of place (border kept) and split attention averages over positions, as in ViP
    which S2-MLPv2 follows. Unlike YOLOAir's copy (whose split attention is fixed at 512 channels),
    any width works.

    YAML ``[c2]`` -> ``S2Attention(c1)`` (``c2`` = input channels after width gain),
    e.g. ``[-1, 1, S2Attention, [1024]]``.
    """

    yaml_example: ClassVar[str] = "[-1, 1, S2Attention, [256]]"

    def __init__(self, c1: int):
        super().__init__()
        self.mlp1 = nn.Linear(c1, c1 * 3)
        self.mlp2 = nn.Linear(c1, c1)
        self.split_attention = SplitAttention(c1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.mlp1(x.permute(0, 2, 3, 1))  # (b, h, w, 3c)
        a, b, c = y.chunk(3, dim=-1)
        branches = torch.stack((spatial_shift(a, 1), spatial_shift(b, 2), c), 1)
        return self.mlp2(self.split_attention(branches)).permute(0, 3, 1, 2)
