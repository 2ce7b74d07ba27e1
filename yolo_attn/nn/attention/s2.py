"""S2-MLPv2 spatial-shift attention (Yu, Xu, Zhang, Li, Wang, 2021), as YOLOAir computes it."""

from __future__ import annotations

from itertools import pairwise
from typing import ClassVar

import torch
from torch import nn

from yolo_attn.nn.attention._common import WIDTH_THEN_ARGS, LayerFactory
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import Keywords


def _shift(x: torch.Tensor, dim: int, forward: bool) -> torch.Tensor:
    """One quarter's shift along ``dim`` with YOLOAir's results (see :class:`S2Attention`).

    ``forward`` (towards higher indices): every position takes the first row/column's value.
    Backward: a true shift by one, the last row/column keeping its own value.
    """
    n = x.shape[dim]
    if forward:
        return x.narrow(dim, 0, 1).expand_as(x)
    return torch.cat((x.narrow(dim, 1, n - 1), x.narrow(dim, n - 1, 1)), dim)


def spatial_shift(x: torch.Tensor, first_dim: int) -> torch.Tensor:
    """Channel quarters of (b, h, w, c) shifted +/- along ``first_dim`` then +/- along the other axis."""
    second_dim = 3 - first_dim
    c = x.shape[-1]
    bounds = [0, c // 4, c // 2, 3 * c // 4, c]
    quarters = x.split([hi - lo for lo, hi in pairwise(bounds)], dim=-1)
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
    """Split attention over ``k`` branches (ViP / ResNeSt style): branch sum pooled over positions
    -> MLP -> softmax over branches. The pooling is a sum over positions, as YOLOAir's (ViP averages)."""

    def __init__(self, c: int, act_layer: LayerFactory, k: int = 3):
        super().__init__()
        self.k = k
        self.mlp1 = nn.Linear(c, c, bias=False)
        self.gelu = act_layer()
        self.mlp2 = nn.Linear(c, c * k, bias=False)

    def forward(self, branches: torch.Tensor) -> torch.Tensor:
        """(b, k, h, w, c) -> (b, h, w, c)."""
        b, k, h, w, c = branches.shape
        pooled = branches.sum(1).flatten(1, 2).sum(1)  # (b, c); summed in the order YOLOAir sums
        weights = self.mlp2(self.gelu(self.mlp1(pooled))).view(b, k, 1, 1, c).softmax(1)
        return (weights * branches).sum(1)


@register("S2MLPv2", rule=Keywords(WIDTH_THEN_ARGS, ("channels",)))
class S2Attention(nn.Module):
    """S2-MLPv2 attention (Yu, Xu, Zhang, Li, Wang, "S2-MLPv2: Improved Spatial-Shift MLP Architecture for
    Vision", arXiv:2108.01072, 2021), with YOLOAir's ``S2Attention`` outputs (same keys and parameters).

    A linear layer expands channels 3x; the first third is spatially shifted one way, the second the
    transposed way, the third kept; split attention (an MLP with ``act_layer``, GELU) mixes the three, a linear
    layer projects back.

    Two places where YOLOAir's code (which we follow so its checkpoints give the same outputs)
    differs from the paper: (1) its shifts assign a slice of a tensor to an overlapping slice of
    the same tensor in place; the shifts towards higher indices read rows/columns already
    overwritten, so the first row (column) is propagated over the whole quarter instead of moving
    by one, while the shifts towards lower indices are true shifts; (2) split attention sums the
    branches over all positions where ViP (and the paper's pseudo-code) averages, so its softmax
    logits grow with the map size. Unlike YOLOAir's copy (whose split attention is fixed at 512
    channels), any width works.

    YAML ``[c2]`` -> ``S2Attention(c1)`` (``c2`` = input channels after width gain),
    e.g. ``[-1, 1, S2Attention, [1024]]``.
    """

    yaml_example: ClassVar[str] = "[-1, 1, S2Attention, [256]]"

    def __init__(self, channels: int, act_layer: LayerFactory = nn.GELU):
        super().__init__()
        self.mlp1 = nn.Linear(channels, channels * 3)
        self.mlp2 = nn.Linear(channels, channels)
        self.split_attention = SplitAttention(channels, act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.mlp1(x.permute(0, 2, 3, 1))  # (b, h, w, 3c)
        a, b, c = y.chunk(3, dim=-1)
        branches = torch.stack((spatial_shift(a, 1), spatial_shift(b, 2), c), 1)
        return self.mlp2(self.split_attention(branches)).permute(0, 3, 1, 2)
