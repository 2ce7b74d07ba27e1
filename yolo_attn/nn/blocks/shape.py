"""Tensor plumbing blocks: concatenation and space/depth rearrangement (YOLOv5)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import CONCAT, ChannelFunction


@register(rule=CONCAT)
class Concat(nn.Module):
    """Concatenate a list of tensors. YAML: ``[[-1, 6], 1, Concat, [1]]``."""

    def __init__(self, dimension: int = 1):
        super().__init__()
        self.d = dimension

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(x, self.d)


DEFAULT_GAIN = 2


class GainRearrangement(nn.Module):
    """Space/depth rearrangement by a spatial factor ``gain`` (YAML ``[gain=2]``): the one setting of
    :class:`Contract` and :class:`Expand`."""

    def __init__(self, gain: int = DEFAULT_GAIN):
        super().__init__()
        self.gain = gain


def _gain(args: list[Any]) -> int:
    """The ``gain`` a YAML line's args give (for the output-channel rules)."""
    return args[0] if args else DEFAULT_GAIN


@register(rule=ChannelFunction(lambda c_in, args: c_in[0] * _gain(args) ** 2, signature="[gain=2]"))
class Contract(GainRearrangement):
    """Space to depth: (b, c, h, w) -> (b, c*g*g, h/g, w/g). YAML: ``[gain=2]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        s = self.gain
        x = x.view(b, c, h // s, s, w // s, s).permute(0, 3, 5, 1, 2, 4).contiguous()
        return x.view(b, c * s * s, h // s, w // s)


@register(rule=ChannelFunction(lambda c_in, args: c_in[0] // _gain(args) ** 2, signature="[gain=2]"))
class Expand(GainRearrangement):
    """Depth to space: (b, c, h, w) -> (b, c/g/g, h*g, w*g). YAML: ``[gain=2]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        s = self.gain
        x = x.view(b, s, s, c // s**2, h, w).permute(0, 3, 4, 1, 5, 2).contiguous()
        return x.view(b, c // s**2, h * s, w * s)
