"""Polarized Self-Attention (Liu, Liu, Fan, Huang, 2021): parallel and sequential layouts."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from yolo_attn.nn.attention._common import LayerFactory
from yolo_attn.nn.attention._gates import Gate
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import Keywords, LiteralChannels

# YAML ``[c1, c2=c1, kernel_size=1]`` (both widths checked against the input): ``kernel_size`` is accepted for
# the first public code's signature ``(inplanes, planes, kernel_size)``, from which it only derives an unused
# padding; the constructor does not take it.
PSA_RULE = Keywords(LiteralChannels((0, 1)), ("channels", None, None))


class _PolarizedGates(nn.Module):
    """The two PSA branches; each returns a ``gate_layer`` gate (sigmoid) for its input.

    Channel-only: ``W_v`` (c -> c/2) pooled by a softmax over positions from ``W_q`` (c -> 1), then
    ``W_z`` (c/2 -> c), LayerNorm, sigmoid. Spatial-only: ``W_q`` (c -> c/2) globally pooled and
    softmaxed over channels, dotted with ``W_v`` (c -> c/2) at every position, sigmoid.
    This follows the paper's equations (LayerNorm after ``W_z``; the spatial softmax runs over the
    pooled query's channels); the first public ``PSA_p``/``PSA_s`` code departs from them (no LayerNorm in
    ``PSA_p``, softmax over positions instead).
    """

    def __init__(self, channels: int, gate_layer: LayerFactory = nn.Sigmoid):
        super().__init__()
        if channels < 2:
            raise ValueError(f"needs at least 2 channels, got {channels}")
        half = channels // 2
        self.ch_wv = nn.Conv2d(channels, half, 1, bias=False)
        self.ch_wq = nn.Conv2d(channels, 1, 1, bias=False)
        self.ch_wz = nn.Conv2d(half, channels, 1, bias=False)
        self.ch_norm = nn.LayerNorm([channels, 1, 1])
        self.ch_gate = Gate("channel", gate_layer)
        self.sp_wv = nn.Conv2d(channels, half, 1, bias=False)
        self.sp_wq = nn.Conv2d(channels, half, 1, bias=False)
        self.sp_gate = Gate("spatial", gate_layer)

    def channel_gate(self, x: torch.Tensor) -> torch.Tensor:
        """(b, c, h, w) -> (b, c, 1, 1)."""
        q = self.ch_wq(x).flatten(2).softmax(-1)  # (b, 1, hw)
        z = torch.einsum("bcn,bn->bc", self.ch_wv(x).flatten(2), q[:, 0])[..., None, None]
        return self.ch_gate(self.ch_norm(self.ch_wz(z)))

    def spatial_gate(self, x: torch.Tensor) -> torch.Tensor:
        """(b, c, h, w) -> (b, 1, h, w)."""
        q = self.sp_wq(x).mean((2, 3)).softmax(-1)  # (b, c/2)
        return self.sp_gate(torch.einsum("bc,bchw->bhw", q, self.sp_wv(x))[:, None])


@register("PSA_p", "ParallelPolarizedSelfAttention", rule=PSA_RULE)
class PolarizedSelfAttention(_PolarizedGates):
    """Polarized Self-Attention, parallel layout (Liu, Liu, Fan, Huang, "Polarized Self-Attention: Towards
    High-quality Pixel-wise Regression", arXiv:2107.00782, 2021; official code DeLightCMU/PSA ``PSA_p``).

    ``y = x * A_ch(x) + x * A_sp(x)``.

    YAML ``[c1, c2=c1, kernel_size=1]`` -> ``PolarizedSelfAttention(c1)`` (args as written, as in
    YOLOAir), e.g. ``[-1, 1, PSA_p, [512, 512]]``.
    """

    yaml_example: ClassVar[str] = "[-1, 1, PolarizedSelfAttention, [256, 256]]"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.channel_gate(x) + x * self.spatial_gate(x)


@register("PSA_s", "SequentialPolarizedSelfAttention", rule=PSA_RULE)
class SequentialPolarized(_PolarizedGates):
    """Polarized Self-Attention, sequential layout (Liu, Liu, Fan, Huang, "Polarized Self-Attention: Towards
    High-quality Pixel-wise Regression", arXiv:2107.00782, 2021; official code DeLightCMU/PSA ``PSA_s``).

    ``z = x * A_ch(x)``, ``y = z * A_sp(z)``.

    YAML ``[c1, c2=c1, kernel_size=1]`` -> ``SequentialPolarized(c1)`` (args as written, as in
    YOLOAir), e.g. ``[-1, 1, PSA_s, [512, 512, False]]``.
    """

    yaml_example: ClassVar[str] = "[-1, 1, SequentialPolarized, [256, 256]]"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x * self.channel_gate(x)
        return z * self.spatial_gate(z)
