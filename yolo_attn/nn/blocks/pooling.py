"""Spatial pyramid pooling blocks of YOLOv5 (He et al., "SPPNet", TPAMI 2015) and YOLO26 (ultralytics/ultralytics)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from yolo_attn.nn.blocks.conv import Conv
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import CONV, ConvLike, LayerContext, Resolved


@register(rule=CONV)
class SPP(nn.Module):
    """Parallel max-pools of sizes ``k``. YAML: ``[c2, k=(5, 9, 13)]``."""

    def __init__(self, c1: int, c2: int, k=(5, 9, 13)):
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_ * (len(k) + 1), c2, 1, 1)
        self.m = nn.ModuleList(nn.MaxPool2d(kernel_size=x, stride=1, padding=x // 2) for x in k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        return self.cv2(torch.cat([x] + [m(x) for m in self.m], 1))


@dataclass(frozen=True)
class PyramidPoolingRule(ConvLike):
    """SPPF's two YAML forms: YOLOv5's ``[c2, k=5]`` (``cv1`` activated), and YOLO26's ``[c2, k, n, shortcut]``
    (ultralytics/ultralytics 8.4), whose longer lines build a linear ``cv1``, as Ultralytics' ``parse_model`` does."""

    signature: str = "[c2, k=5] or [c2, k=5, n=3, shortcut=False] (linear cv1)"

    def resolve(self, args: list[Any], ctx: LayerContext) -> Resolved:
        if len(args) > 4:
            raise ValueError(f"expects at most [c2, k, n, shortcut], got {args!r}")
        resolved = super().resolve(args, ctx)
        if len(args) <= 2:
            return resolved
        defaults = [5, 3, False]  # k, n, shortcut
        built = [*resolved.args, *defaults[len(args) - 1 :], False]  # ... then activate_cv1=False
        return replace(resolved, args=built)


@register(rule=PyramidPoolingRule())
class SPPF(nn.Module):
    """SPP-Fast: ``n`` chained max-pools of size ``k`` (n=3, k=5 equals SPP(k=(5, 9, 13))); YOLO26 (ultralytics/
    ultralytics) adds ``n``, a residual (``shortcut``, when the widths match) and a linear ``cv1``.
    YAML: ``[c2, k=5]`` (YOLOv5) or ``[c2, k=5, n=3, shortcut=False]`` (YOLO26, linear ``cv1``)."""

    def __init__(self, c1: int, c2: int, k: int = 5, n: int = 3, shortcut: bool = False, activate_cv1: bool = True):
        super().__init__()
        c_ = c1 // 2
        self.n = n
        self.cv1 = Conv(c1, c_, 1, 1, act=activate_cv1)
        self.cv2 = Conv(c_ * (n + 1), c2, 1, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.cv1(x)]
        for _ in range(self.n):
            y.append(self.m(y[-1]))
        out = self.cv2(torch.cat(y, 1))
        return out + x if self.add else out
