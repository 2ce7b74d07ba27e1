"""BoTNet multi-head self-attention with 2-D relative position logits (Srinivas et al., CVPR 2021)."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from yolo_attn.nn.attention._common import require_divisible
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import Keywords, LiteralChannels


def relative_embeddings(table: torch.Tensor, length: int) -> torch.Tensor:
    """(2L0-1, d) offsets -(L0-1)..(L0-1) -> (2L-1, d) for ``length`` L: the central slice when L <= L0,
    linear interpolation along the offset axis when the map is larger than the table."""
    needed = 2 * length - 1
    if needed <= table.shape[0]:
        start = (table.shape[0] - needed) // 2
        return table[start : start + needed]
    return F.interpolate(table.t()[None], size=needed, mode="linear", align_corners=True)[0].t()


def relative_logits_1d(q: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """q (b, heads, rows, L, d) . table -> (b, heads, rows, L, L): logit of query i for key j uses offset j - i."""
    length = q.shape[-2]
    rel = torch.einsum("bnrld,md->bnrlm", q, relative_embeddings(table, length))  # (.., L, 2L-1)
    offsets = torch.arange(length, device=q.device)
    index = (offsets[None, :] - offsets[:, None] + length - 1).expand(*rel.shape[:-1], length)
    return rel.gather(-1, index)


MHSA_RULE = Keywords(LiteralChannels((0,)), ("channels", "width", "height", "heads", "pos_emb"))


@register("BoTMHSA", "BottleneckMHSA", rule=MHSA_RULE)
class MHSA(nn.Module):
    """Multi-head self-attention of BoTNet (Srinivas, Lin, Parmar, Shlens, Abbeel, Vaswani, "Bottleneck
    Transformers for Visual Recognition", CVPR 2021, arXiv:2101.11605; official TF code by the authors).

    1x1-conv q, k, v with ``heads`` heads, queries scaled by ``d_head ** -0.5``; with ``pos_emb`` the logits
    add 2-D relative position terms (learned width/height offset tables shared by heads, as in the
    official code). The tables are sized for a ``height`` x ``width`` map and resized to the actual
    map (central slice or linear interpolation), so any input size works.

    YAML ``[c1, width=14, height=14, heads=4, pos_emb=False]`` -> ``MHSA(c1, width=..., ...)`` (args as written, as in
    YOLOAir: ``c1`` is the real input channel count), e.g. ``[-1, 1, MHSA, [512, 20, 20, 4, True]]``.
    """

    yaml_example: ClassVar[str] = "[-1, 1, MHSA, [256, 14, 14, 4, True]]"

    def __init__(self, channels: int, *, width: int = 14, height: int = 14, heads: int = 4, pos_emb: bool = False):
        super().__init__()
        require_divisible(channels, heads, "heads")
        self.heads = heads
        self.query = nn.Conv2d(channels, channels, 1)
        self.key = nn.Conv2d(channels, channels, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        d_head = channels // heads
        self.rel_width: nn.Parameter | None
        self.rel_height: nn.Parameter | None
        if pos_emb:
            self.rel_width = nn.Parameter(torch.randn(2 * width - 1, d_head) * d_head**-0.5)
            self.rel_height = nn.Parameter(torch.randn(2 * height - 1, d_head) * d_head**-0.5)
        else:
            self.rel_width = self.rel_height = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        split = (b, self.heads, c // self.heads, h, w)
        q = self.query(x).view(split) * (c // self.heads) ** -0.5
        k, v = self.key(x).view(split), self.value(x).view(split)
        logits = torch.einsum("bndxy,bndij->bnxyij", q, k)  # (b, heads, h, w, h, w)
        if self.rel_width is not None and self.rel_height is not None:
            q_rows = q.permute(0, 1, 3, 4, 2)  # (b, heads, h, w, d)
            logits = logits + relative_logits_1d(q_rows, self.rel_width)[:, :, :, :, None, :]
            q_cols = q.permute(0, 1, 4, 3, 2)  # (b, heads, w, h, d)
            logits = logits + relative_logits_1d(q_cols, self.rel_height).permute(0, 1, 3, 2, 4)[..., None]
        attention = logits.reshape(b, self.heads, h * w, h * w).softmax(-1)
        out = torch.einsum("bnqk,bndk->bndq", attention, v.flatten(3))
        return out.reshape(b, c, h, w)
