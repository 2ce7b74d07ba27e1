"""Convolution blocks of YOLOv5 (ultralytics/yolov5 ``models/common.py``) and GhostNet."""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator
from contextvars import ContextVar
from typing import overload

import torch
from torch import nn

from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import CONV

# The activation of ``Conv(act=True)``: the model's own (a YAML's top-level ``activation``) while that model is
# built, else (None) SiLU. A context variable, not a module global: the setting belongs to one build, in one thread.
_DEFAULT_ACTIVATION: ContextVar[nn.Module | None] = ContextVar("default_activation", default=None)


@contextlib.contextmanager
def default_activation(act: nn.Module) -> Iterator[None]:
    """Use ``act`` (copied per layer) as the activation of every ``Conv(act=True)`` built inside."""
    token = _DEFAULT_ACTIVATION.set(act)
    try:
        yield
    finally:
        _DEFAULT_ACTIVATION.reset(token)


@overload
def autopad(k: int, p: int | None = None, d: int = 1) -> int: ...
@overload
def autopad(k: list[int], p: list[int] | None = None, d: int = 1) -> list[int]: ...
def autopad(k: int | list[int], p: int | list[int] | None = None, d: int = 1) -> int | list[int]:
    """'Same' padding for kernel ``k`` and dilation ``d`` when ``p`` is None."""
    if d > 1:
        k = d * (k - 1) + 1 if isinstance(k, int) else [d * (x - 1) + 1 for x in k]
    if p is None:
        p = k // 2 if isinstance(k, int) else [x // 2 for x in k]
    return p


def make_activation(act: bool | nn.Module) -> nn.Module:
    """``True`` -> the default activation, an ``nn.Module`` -> itself, anything else -> Identity."""
    if act is True:
        default = _DEFAULT_ACTIVATION.get()
        return nn.SiLU() if default is None else copy.deepcopy(default)
    return act if isinstance(act, nn.Module) else nn.Identity()


@register(rule=CONV)
class Conv(nn.Module):
    """Conv2d + BatchNorm2d + activation. YAML: ``[c2, k=1, s=1, p=None, g=1, act=True]``.

    ``act`` sits before ``d`` so that YOLOv7 lines such as
    ``[-1, 1, Conv, [32, 3, 2, None, 1, nn.LeakyReLU(0.1)]]`` build unmodified.
    """

    def __init__(self, c1: int, c2: int, k=1, s=1, p=None, g: int = 1, act: bool | nn.Module = True, d: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, autopad(k, p, d), groups=g, dilation=d, bias=False)
        self.bn: nn.Module = nn.BatchNorm2d(c2)  # Identity once fused
        self.act = make_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    def fuse(self) -> None:
        """Fold the BatchNorm into the convolution (inference only)."""
        if isinstance(self.bn, nn.BatchNorm2d):
            self.conv = fuse_conv_and_bn(self.conv, self.bn)
            self.bn = nn.Identity()


@register(rule=CONV)
class DWConv(Conv):
    """Depth-wise convolution (groups = gcd(c1, c2)). YAML: ``[c2, k=1, s=1, d=1, act=True]``."""

    def __init__(self, c1: int, c2: int, k=1, s=1, d: int = 1, act: bool | nn.Module = True):
        super().__init__(c1, c2, k, s, g=math.gcd(c1, c2), d=d, act=act)


@register(rule=CONV)
class Focus(nn.Module):
    """Space-to-depth then Conv (YOLOv5 <= v5.0 stem). YAML: ``[c2, k=1, s=1, p=None, g=1, act=True]``."""

    def __init__(self, c1: int, c2: int, k=1, s=1, p=None, g: int = 1, act: bool | nn.Module = True):
        super().__init__()
        self.conv = Conv(c1 * 4, c2, k, s, p, g, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(
            torch.cat((x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]), 1)
        )


@register(rule=CONV)
class GhostConv(nn.Module):
    """Ghost convolution (Han et al., "GhostNet", CVPR 2020). YAML: ``[c2, k=1, s=1, g=1, act=True]``."""

    def __init__(self, c1: int, c2: int, k=1, s=1, g: int = 1, act: bool | nn.Module = True):
        super().__init__()
        c_ = c2 // 2
        self.cv1 = Conv(c1, c_, k, s, None, g, act=act)
        self.cv2 = Conv(c_, c_, 5, 1, None, c_, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv1(x)
        return torch.cat((y, self.cv2(y)), 1)


@register(rule=CONV)
class CrossConv(nn.Module):
    """Cross convolution: (1 x k) then (k x 1). YAML: ``[c2, k=3, s=1, g=1, e=1.0, shortcut=False]``."""

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1, g: int = 1, e: float = 1.0, shortcut: bool = False):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, (1, k), (1, s))
        self.cv2 = Conv(c_, c2, (k, 1), (s, 1), g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


def fuse_conv_and_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """Fold a BatchNorm2d into the preceding Conv2d (returns a new conv with bias)."""
    # the ignores: torch types a Conv2d's own sizes as tuple[int, ...], its constructor's as int | tuple[int, int]
    fused = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation, groups=conv.groups, bias=True,  # type: ignore[arg-type]
    ).requires_grad_(False).to(conv.weight.device)
    assert fused.bias is not None  # made with bias
    assert bn.running_mean is not None and bn.running_var is not None  # a BatchNorm2d tracking its statistics
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
    conv_bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.copy_(bn.bias + (conv_bias - bn.running_mean) * scale)
    return fused


__all__ = [
    "Conv", "DWConv", "Focus", "GhostConv", "CrossConv", "autopad", "default_activation",
    "fuse_conv_and_bn", "make_activation",
]
