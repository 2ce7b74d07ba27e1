"""Implicit knowledge layers of YOLOR (Wang et al., "You Only Learn One Representation", 2021).

Used by YOLOv7's IDetect head (WongKinYiu/yolov7 ``models/common.py``): a learned per-channel
offset (ImplicitA) before and a learned per-channel scale (ImplicitM) after each output conv.
The parameter is called ``implicit`` as in YOLOv7, so checkpoints load by key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import LayerContext, Resolved, YamlRule


@dataclass(frozen=True)
class ImplicitChannels(YamlRule):
    """``[]`` or ``[channel, mean, std]`` -> ``Block(channel or c1, mean, std)``; channels kept.

    YOLOv7 writes the channel count explicitly; it must equal the input's channels.
    """

    signature: str = "[channel=c1, mean, std]"

    def resolve(self, args: list[Any], ctx: LayerContext) -> Resolved:
        c1 = ctx.c_in[0]
        if args and args[0] != c1:
            raise ValueError(f"channel {args[0]!r} does not match the input's {c1} channels")
        return Resolved([c1, *args[1:]], c1, ctx.number)


IMPLICIT = ImplicitChannels()


class _Implicit(nn.Module):
    """A learned per-channel tensor ``(1, channel, 1, 1)`` initialised from ``N(mean, std)``."""

    def __init__(self, channel: int, mean: float, std: float):
        super().__init__()
        self.channel = channel
        self.implicit = nn.Parameter(torch.empty(1, channel, 1, 1))
        nn.init.normal_(self.implicit, mean=mean, std=std)


@register(rule=IMPLICIT)
class ImplicitA(_Implicit):
    """Additive implicit knowledge: ``x + a`` with ``a ~ N(mean, std)`` per channel. YAML: ``[channel]``."""

    def __init__(self, channel: int, mean: float = 0.0, std: float = 0.02):
        super().__init__(channel, mean, std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.implicit


@register(rule=IMPLICIT)
class ImplicitM(_Implicit):
    """Multiplicative implicit knowledge: ``x * m`` with ``m ~ N(mean, std)`` per channel. YAML: ``[channel]``."""

    def __init__(self, channel: int, mean: float = 1.0, std: float = 0.02):
        super().__init__(channel, mean, std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.implicit


__all__ = ["IMPLICIT", "ImplicitA", "ImplicitChannels", "ImplicitM"]
