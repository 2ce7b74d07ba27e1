"""Global Context block (Cao, Xu, Lin, Wei, Hu, GCNet, ICCV workshops 2019)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import LiteralChannels

_POOLINGS = ("att", "avg")
_FUSIONS = ("channel_add", "channel_mul")


def _transform(c: int, planes: int) -> nn.Sequential:
    """GCNet's bottleneck transform: 1x1 conv, LayerNorm, ReLU, 1x1 conv (last conv zero-initialised)."""
    seq = nn.Sequential(
        nn.Conv2d(c, planes, 1), nn.LayerNorm([planes, 1, 1]), nn.ReLU(inplace=True), nn.Conv2d(planes, c, 1)
    )
    nn.init.zeros_(seq[-1].weight)
    nn.init.zeros_(seq[-1].bias)
    return seq


@register("GlobalContextBlock", "GC", "ContextBlock", rule=LiteralChannels((0,)))
class GlobalContext(nn.Module):
    """Global Context block (Cao, Xu, Lin, Wei, Hu, "GCNet: Non-local Networks Meet Squeeze-Excitation Networks
    and Beyond", ICCV workshops 2019, arXiv:1904.11492; official code xvjiarui/GCNet ``ContextBlock``).

    Context modelling: softmax attention pooling over positions from a 1x1 conv (``'att'``) or global
    average pooling (``'avg'``). Transform: 1x1 conv to ``c1 * ratio`` channels, LayerNorm, ReLU, 1x1
    conv back, zero-initialised as in the official code. Fusion: ``'channel_add'`` (default) broadcasts
    the result onto every position, ``'channel_mul'`` gates with its sigmoid; both may be given.

    YAML ``[c1, ratio=0.25, pooling_type='att', fusion_types='channel_add']`` -> ``GlobalContext(...)``
    (YOLOAir passes these args as written: ``c1`` is the real input channel count),
    e.g. ``[-1, 1, GlobalContextBlock, [512, 0.25]]``.
    """

    yaml_example: ClassVar[str] = "[-1, 1, GlobalContext, [256, 0.25]]"

    def __init__(
        self, c1: int, ratio: float = 0.25, pooling_type: str = "att", fusion_types: str | Sequence[str] = "channel_add"
    ):
        super().__init__()
        fusions = (fusion_types,) if isinstance(fusion_types, str) else tuple(fusion_types)
        if pooling_type not in _POOLINGS:
            raise ValueError(f"pooling_type must be one of {_POOLINGS}, got {pooling_type!r}")
        if not fusions or any(f not in _FUSIONS for f in fusions):
            raise ValueError(f"fusion_types must be a non-empty selection of {_FUSIONS}, got {fusion_types!r}")
        planes = max(int(c1 * ratio), 1)
        self.conv_mask = nn.Conv2d(c1, 1, 1) if pooling_type == "att" else None
        self.channel_add_conv = _transform(c1, planes) if "channel_add" in fusions else None
        self.channel_mul_conv = _transform(c1, planes) if "channel_mul" in fusions else None

    def spatial_pool(self, x: torch.Tensor) -> torch.Tensor:
        """(b, c, h, w) -> (b, c, 1, 1) context vector."""
        if self.conv_mask is None:
            return x.mean((2, 3), keepdim=True)
        weights = self.conv_mask(x).flatten(2).softmax(-1)  # (b, 1, hw)
        return torch.einsum("bcn,bn->bc", x.flatten(2), weights[:, 0])[..., None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context = self.spatial_pool(x)
        out = x
        if self.channel_mul_conv is not None:
            out = out * self.channel_mul_conv(context).sigmoid()
        if self.channel_add_conv is not None:
            out = out + self.channel_add_conv(context)
        return out
