"""Pieces shared by several attention papers: the constructor contract (hidden widths, layer factories),
the pointwise MLP of squeeze-and-excitation style blocks, YOLOAir's attention YAML rule, channel checks and the
channel-wise mean/max pooling that spatial gates start from.

The contract, after timm's ``layers/``: ``Block(channels, rd_ratio, rd_channels, rd_divisor, kernel_size,
act_layer, gate_layer, *, paper-specific arguments)``, each of the middle ones only where the block has it. The
YAML order users write (``[c2, reduction, ...]``) is mapped onto it by each block's rule (``rules.Keywords``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from yolo_attn.nn.rules import SameWidth, make_divisible

LayerFactory = Callable[[], nn.Module]  # ``act_layer`` / ``gate_layer``: a module class or a partial of one
NormFactory = Callable[[int], nn.Module]  # a normalisation over that many channels (``nn.BatchNorm2d``, ...)

# YOLOAir's attention branch (SEAttention, SKAttention, S2Attention, SOCA, ...): ``[c2, *rest]`` ->
# ``Block(c1, *rest)``; ``c2`` only declares the (unchanged) width.
WIDTH_THEN_ARGS = SameWidth(pass_width=False, signature="[c2 (= input channels after width gain), *args]")


def hidden_channels(
    channels: int, rd_ratio: float, rd_channels: int | None = None, rd_divisor: int = 1, min_channels: int = 1
) -> int:
    """The hidden width of a reduction (squeeze MLP, query/key projection, bottleneck branch) from timm's arguments.

    ``rd_channels`` when given. Otherwise ``channels * rd_ratio`` rounded down, as the papers' ``channels // r``
    (the product is rounded to 1e-6 first: ``1 / r`` is inexact in binary, ``49 * (1 / 49) < 1``), raised to
    ``min_channels`` (CA's 8, SK's L, CoT's 32), then up to a multiple of ``rd_divisor`` with YOLOv5's
    :func:`~yolo_attn.nn.rules.make_divisible` (1: unchanged). Rounding down rather than timm's rounding to the
    nearest multiple keeps every published hidden width, hence every block's parameter count.
    """
    if rd_channels is None:
        if not rd_ratio > 0 or rd_divisor < 1:
            raise ValueError(f"rd_ratio must be > 0 and rd_divisor >= 1, got {rd_ratio!r} and {rd_divisor!r}")
        rd_channels = make_divisible(max(math.floor(round(channels * rd_ratio, 6)), min_channels), rd_divisor)
    if rd_channels < 1:
        raise ValueError(f"rd_channels must be >= 1, got {rd_channels!r}")
    return rd_channels


def pointwise_mlp(
    channels: int, hidden: int, act_layer: LayerFactory, out_channels: int | None = None, *,
    norm_layer: NormFactory | None = None, bias: bool = True, conv: bool = True,
) -> nn.Sequential:
    """Two pointwise projections ``channels -> hidden -> out_channels`` (default ``channels``) with ``act_layer``
    between: the excitation MLP of SE (Hu et al., "Squeeze-and-Excitation Networks") and the blocks built on it.

    1x1 convolutions on ``(b, c, h, w)`` (``conv``) or ``nn.Linear`` layers on channels-last tensors; ``norm_layer``
    (called with ``hidden``) after the first projection, as GCNet's LayerNorm or CoT's BatchNorm. The layers are
    created in order and are the ``nn.Sequential``'s items ``0, [1 norm,] act, last``, so a block that stores the
    result under its paper's name keeps its published ``state_dict`` keys and initialisation.
    """
    out_channels = channels if out_channels is None else out_channels

    def project(c_in: int, c_out: int) -> nn.Module:
        return nn.Conv2d(c_in, c_out, 1, bias=bias) if conv else nn.Linear(c_in, c_out, bias=bias)

    reduce = project(channels, hidden)
    norm = [norm_layer(hidden)] if norm_layer is not None else []
    return nn.Sequential(reduce, *norm, act_layer(), project(hidden, out_channels))


def reduction_as_ratio(named: dict[str, Any]) -> dict[str, Any]:
    """A rule's ``convert``: the YAML's ``reduction`` r (an int, as the posts and YOLOAir write it) -> ``rd_ratio``
    1/r."""
    named = dict(named)
    if "reduction" in named:
        reduction = named.pop("reduction")
        if isinstance(reduction, bool) or not isinstance(reduction, (int, float)) or not reduction > 0:
            raise ValueError(f"reduction must be a positive number, got {reduction!r}")
        named["rd_ratio"] = 1 / reduction
    return named


def require_divisible(channels: int, divisor: int, what: str) -> None:
    """Build-time check that ``channels`` splits evenly into ``divisor`` (``what`` names it)."""
    if divisor < 1 or channels % divisor:
        raise ValueError(f"needs channels divisible by {what} ({divisor}), got {channels} channels")


def channel_mean_max(x: torch.Tensor, max_first: bool = False) -> torch.Tensor:
    """(b, c, h, w) -> (b, 2, h, w): mean and max over channels (CBAM, LSK; TripletAttention's Z-pool is max first)."""
    pooled = (x.mean(1, keepdim=True), x.amax(1, keepdim=True))
    return torch.cat(pooled[::-1] if max_first else pooled, 1)
