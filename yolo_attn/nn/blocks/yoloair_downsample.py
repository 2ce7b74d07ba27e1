"""YOLOAir's parameter-free 2x down-sampling layers (iscyy/yoloair ``models/common.py``): space-to-depth of
SPD-Conv and the Haar wavelet transform, both (b, c, h, w) -> (b, 4c, h/2, w/2)."""

from __future__ import annotations

import torch
from torch import nn

from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import ChannelFunction


@register(rule=ChannelFunction(lambda c_in, args: 4 * c_in[0], "[dimension=1]"))
class space_to_depth(nn.Module):  # noqa: N801 - YOLOAir's YAML name
    """Space-to-depth of SPD-Conv (Sunkara, Luo, "No More Strided Convolutions or Pooling", ECML PKDD 2022,
    arXiv:2208.03641): (b, c, h, w) -> (b, 4c, h/2, w/2). YAML: ``[dimension=1]`` (unused, as in YOLOAir).
    Example: ``[-1, 1, space_to_depth, [1]]``."""

    def __init__(self, dimension: int = 1):
        super().__init__()
        self.d = dimension

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]), 1)


@register(rule=ChannelFunction(lambda c_in, args: 4 * c_in[0], "[]"))
class DWT(nn.Module):
    """One-level Haar discrete wavelet transform (Mallat, "A Theory for Multiresolution Signal Decomposition",
    TPAMI 1989; the db1 DWT of YOLOR's ``DWT`` layer): (b, c, h, w) -> (b, 4c, h/2, w/2), the low band halved
    followed, per channel, by the three detail bands halved and shifted by 0.5. No parameters.
    Example: ``[-1, 1, DWT, []]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b, c, d = x[..., ::2, ::2], x[..., ::2, 1::2], x[..., 1::2, ::2], x[..., 1::2, 1::2]
        low = (a + b + c + d) / 2
        details = torch.stack(((a - b + c - d) / 2, (a + b - c - d) / 2, (a - b - c + d) / 2), 2)
        return torch.cat((low / 2, details.flatten(1, 2) / 2 + 0.5), 1)
