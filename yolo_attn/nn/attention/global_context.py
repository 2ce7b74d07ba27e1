"""Global Context block (Cao, Xu, Lin, Wei, Hu, GCNet, ICCV workshops 2019)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from yolo_attn.nn.attention._common import LayerFactory, hidden_channels, pointwise_mlp
from yolo_attn.nn.attention._gates import Gate
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import Keywords, LiteralChannels

_POOLINGS = ("att", "avg")
_FUSIONS = ("channel_add", "channel_mul")


def _transform(c: int, planes: int, act_layer: LayerFactory) -> nn.Sequential:
    """GCNet's bottleneck transform: 1x1 conv, LayerNorm, ``act_layer``, 1x1 conv (last conv zero-initialised)."""
    seq = pointwise_mlp(c, planes, act_layer, norm_layer=lambda width: nn.LayerNorm([width, 1, 1]))
    last = seq[-1]
    assert isinstance(last, nn.Conv2d) and last.bias is not None
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return seq


GC_RULE = Keywords(LiteralChannels((0,)), ("channels", "rd_ratio", "pooling_type", "fusion_types"))


@register("GlobalContextBlock", "GC", "ContextBlock", rule=GC_RULE)
class GlobalContext(nn.Module):
    """Global Context block (Cao, Xu, Lin, Wei, Hu, "GCNet: Non-local Networks Meet Squeeze-Excitation Networks
    and Beyond", ICCV workshops 2019, arXiv:1904.11492; official code xvjiarui/GCNet ``ContextBlock``).

    Context modelling: softmax attention pooling over positions from a 1x1 conv (``'att'``) or global
    average pooling (``'avg'``). Transform: 1x1 conv to ``channels * rd_ratio`` channels, LayerNorm,
    ``act_layer`` (ReLU), 1x1 conv back, zero-initialised as in the official code. Fusion: ``'channel_add'``
    (default) broadcasts the result onto every position, ``'channel_mul'`` gates with it through
    ``gate_layer`` (sigmoid); both may be given.

    YAML ``[c1, ratio=0.25, pooling_type='att', fusion_types='channel_add']`` -> ``GlobalContext(c1,
    rd_ratio=ratio, pooling_type=..., fusion_types=...)``
    (YOLOAir passes these args as written: ``c1`` is the real input channel count),
    e.g. ``[-1, 1, GlobalContextBlock, [512, 0.25]]``.
    """

    yaml_example: ClassVar[str] = "[-1, 1, GlobalContext, [256, 0.25]]"

    def __init__(
        self, channels: int, rd_ratio: float = 1 / 4, rd_channels: int | None = None, rd_divisor: int = 1,
        act_layer: LayerFactory = nn.ReLU, gate_layer: LayerFactory = nn.Sigmoid, *,
        pooling_type: str = "att", fusion_types: str | Sequence[str] = "channel_add",
    ):
        super().__init__()
        fusions = (fusion_types,) if isinstance(fusion_types, str) else tuple(fusion_types)
        if pooling_type not in _POOLINGS:
            raise ValueError(f"pooling_type must be one of {_POOLINGS}, got {pooling_type!r}")
        if not fusions or any(f not in _FUSIONS for f in fusions):
            raise ValueError(f"fusion_types must be a non-empty selection of {_FUSIONS}, got {fusion_types!r}")
        planes = hidden_channels(channels, rd_ratio, rd_channels, rd_divisor)
        self.conv_mask = nn.Conv2d(channels, 1, 1) if pooling_type == "att" else None
        self.channel_add_conv = _transform(channels, planes, act_layer) if "channel_add" in fusions else None
        self.channel_mul_conv = _transform(channels, planes, act_layer) if "channel_mul" in fusions else None
        self.gate = Gate("channel", gate_layer) if self.channel_mul_conv is not None else None

    def spatial_pool(self, x: torch.Tensor) -> torch.Tensor:
        """(b, c, h, w) -> (b, c, 1, 1) context vector."""
        if self.conv_mask is None:
            return x.mean((2, 3), keepdim=True)
        weights = self.conv_mask(x).flatten(2).softmax(-1)  # (b, 1, hw)
        return torch.einsum("bcn,bn->bc", x.flatten(2), weights[:, 0])[..., None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context = self.spatial_pool(x)
        out = x
        if self.channel_mul_conv is not None and self.gate is not None:
            out = out * self.gate(self.channel_mul_conv(context))
        if self.channel_add_conv is not None:
            out = out + self.channel_add_conv(context)
        return out
