"""Criss-Cross attention (Huang et al., CCNet, ICCV 2019)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from yolo_attn.nn.attention._common import WIDTH_THEN_ARGS, hidden_channels
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import Keywords


@register("CCA", "CrissCross", rule=Keywords(WIDTH_THEN_ARGS, ("channels",)))
class CrissCrossAttention(nn.Module):
    """Criss-Cross attention (Huang, Wang, Huang, Huang, Wei, Liu, "CCNet: Criss-Cross Attention for Semantic
    Segmentation", ICCV 2019, arXiv:1811.11721; official code speedinghzl/CCNet).

    Each position attends to the positions in its row and column (itself counted once: the column
    term masks it out, as the official code does). Query/key have ``channels * rd_ratio`` channels (1/8);
    ``y = gamma * attention + x`` with ``gamma`` initialised to 0. One pass; CCNet's RCCA applies it twice.

    YAML ``[c2]`` -> ``CrissCrossAttention(c1)`` (``c2`` = input channels after width gain),
    e.g. ``[-1, 1, CrissCrossAttention, [1024]]``.
    """

    yaml_example: ClassVar[str] = "[-1, 1, CrissCrossAttention, [256]]"

    def __init__(self, channels: int, rd_ratio: float = 1 / 8, rd_channels: int | None = None, rd_divisor: int = 1):
        super().__init__()
        hidden = hidden_channels(channels, rd_ratio, rd_channels, rd_divisor)
        self.query_conv = nn.Conv2d(channels, hidden, 1)
        self.key_conv = nn.Conv2d(channels, hidden, 1)
        self.value_conv = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.shape[2]
        q, k, v = self.query_conv(x), self.key_conv(x), self.value_conv(x)
        energy_col = torch.einsum("bchw,bcgw->bhwg", q, k)  # keys in the same column (rows g)
        rows = torch.arange(h, device=x.device)
        self_mask = (rows[:, None] == rows)[:, None, :]  # (h, 1, g); not torch.eye: ONNX Runtime lacks bool EyeLike
        energy_col = energy_col.masked_fill(self_mask, float("-inf"))
        energy_row = torch.einsum("bchw,bchv->bhwv", q, k)  # keys in the same row (columns v)
        attention = torch.cat((energy_col, energy_row), -1).softmax(-1)
        out = torch.einsum("bhwg,bcgw->bchw", attention[..., :h], v) + torch.einsum(
            "bhwv,bchv->bchw", attention[..., h:], v
        )
        return self.gamma * out + x
