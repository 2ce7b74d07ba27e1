"""YOLOAir-only CSP blocks (iscyy/yoloair ``models/common.py``): CNeB and C3C2.

Module and attribute names follow YOLOAir so that parameter counts and ``state_dict`` keys match.
"""

from __future__ import annotations

import torch
from torch import nn

from yolo_attn.nn.blocks.conv import Conv
from yolo_attn.nn.blocks.csp import C3, Bottleneck
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import CSP


class ConvNextBlock(nn.Module):
    """ConvNeXt block (Liu et al., "A ConvNet for the 2020s", CVPR 2022), as YOLOAir's CNeB uses it.

    7x7 depth-wise conv, channels-last LayerNorm, 4x inverted MLP with GELU, layer scale
    (initialised to ``layer_scale_init``), residual. No drop-path (YOLOAir builds it with rate 0).
    """

    def __init__(self, dim: int, layer_scale_init: float = 1e-6):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(layer_scale_init * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)  # (b, h, w, c)
        y = self.gamma * self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        return x + y.permute(0, 3, 1, 2)


@register(rule=CSP)
class CNeB(C3):
    """C3 with ConvNeXt blocks inside (YOLOAir's CSP-ConvNeXt). YAML: ``[c2, shortcut=True, g=1, e=0.5]``.

    Example: ``[-1, 3, CNeB, [128]]`` (number = ConvNeXt blocks; ``shortcut`` and ``g`` are accepted
    for YOLOAir compatibility and unused, as in YOLOAir).
    """

    def inner(self, c_: int, n: int, shortcut: bool, g: int) -> nn.Module:
        return nn.Sequential(*(ConvNextBlock(c_) for _ in range(n)))


@register(rule=CSP)
class C3C2(nn.Module):
    """YOLOAir's C3 variant with one shared 1x1 stem. YAML: ``[c2, shortcut=True, g=1, e=0.5]``.

    ``y = conv1x1(x)``; output ``cv1(cat(bottlenecks(SiLU(BN(y))), y))`` where ``cv1`` is a 1x1
    Conv with Mish. Example: ``[-1, 3, C3C2, [512]]``.
    """

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.conv = nn.Conv2d(c1, c_, 1, 1, 0, groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c_)
        self.act = nn.SiLU()
        self.cv1 = Conv(2 * c_, c2, 1, act=nn.Mish())
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, e=1.0) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.cv1(torch.cat((self.m(self.act(self.bn(y))), y), 1))


__all__ = ["CNeB", "C3C2", "ConvNextBlock"]
