"""Pieces shared by several attention papers: YOLOAir's attention YAML rule, channel checks,
channel shuffle and the channel-wise mean/max pooling that spatial gates start from."""

from __future__ import annotations

import torch

from yolo_attn.nn.rules import SameWidth


# YOLOAir's attention branch (SEAttention, SKAttention, S2Attention, SOCA, ...): ``[c2, *rest]`` ->
# ``Block(c1, *rest)``; ``c2`` only declares the (unchanged) width.
WIDTH_THEN_ARGS = SameWidth(pass_width=False, signature="[c2 (= input channels after width gain), *args]")


def check_same_width(c1: int, c2: int | None) -> None:
    """Attention keeps its input channels: ``c2`` (when given) must equal ``c1``."""
    if c2 is not None and c2 != c1:
        raise ValueError(f"keeps its input channels, but the output width is {c2} for {c1} input channels")


def reduced_channels(channels: int, reduction: int) -> int:
    """Hidden width ``channels // reduction`` of a squeeze MLP; build-time error when it would be zero."""
    hidden = channels // reduction
    if hidden < 1:
        raise ValueError(f"reduction {reduction} leaves no hidden units for {channels} channels")
    return hidden


def require_divisible(channels: int, divisor: int, what: str) -> None:
    """Build-time check that ``channels`` splits evenly into ``divisor`` (``what`` names it)."""
    if divisor < 1 or channels % divisor:
        raise ValueError(f"needs channels divisible by {what} ({divisor}), got {channels} channels")


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet channel shuffle: (b, g*n, h, w) -> interleave the ``groups`` channel groups."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


def channel_mean_max(x: torch.Tensor, max_first: bool = False) -> torch.Tensor:
    """(b, c, h, w) -> (b, 2, h, w): mean and max over channels (CBAM, LSK; TripletAttention's Z-pool is max first)."""
    pooled = (x.mean(1, keepdim=True), x.amax(1, keepdim=True))
    return torch.cat(pooled[::-1] if max_first else pooled, 1)
