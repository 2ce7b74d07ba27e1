"""Bottleneck and CSP blocks of YOLOv5 (ultralytics/yolov5 ``models/common.py``).

CSP: Wang et al., "CSPNet: A New Backbone that can Enhance Learning Capability of CNN", CVPRW 2020.
"""

from __future__ import annotations

import torch
from torch import nn

from yolo_attn.nn.blocks.conv import Conv, CrossConv, DWConv, GhostConv
from yolo_attn.nn.blocks.pooling import SPP
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import CONV, CSP


@register(rule=CONV)
class Bottleneck(nn.Module):
    """1x1 then 3x3 Conv with a residual when shapes allow. YAML: ``[c2, shortcut=True, g=1, e=0.5, k=(1, 3)]``.

    ``k``: the two kernel sizes (Ultralytics' C2f/C3k use 3x3 then 3x3).
    """

    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1, e: float = 0.5, k=(1, 3)):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1: nn.Module = Conv(c1, c_, k[0], 1)  # YOLOv9's RepBottleneck makes it a RepConvN
        self.cv2 = Conv(c_, c2, k[1], 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


@register(rule=CSP)
class BottleneckCSP(nn.Module):
    """CSP bottleneck stack (CSPNet). YAML: ``[c2, shortcut=True, g=1, e=0.5]``; number = repeats."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = nn.Conv2d(c1, c_, 1, 1, bias=False)
        self.cv3 = nn.Conv2d(c_, c_, 1, 1, bias=False)
        self.cv4 = Conv(2 * c_, c2, 1, 1)
        self.bn = nn.BatchNorm2d(2 * c_)
        self.act = nn.SiLU()
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, e=1.0) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y1 = self.cv3(self.m(self.cv1(x)))
        y2 = self.cv2(x)
        return self.cv4(self.act(self.bn(torch.cat((y1, y2), 1))))


@register(rule=CSP)
class C3(nn.Module):
    """CSP bottleneck with three convolutions. YAML: ``[c2, shortcut=True, g=1, e=0.5]``; number = repeats."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.cv3 = Conv(2 * c_, c2, 1)
        self.m = self.inner(c_, n, shortcut, g)

    def inner(self, c_: int, n: int, shortcut: bool, g: int) -> nn.Module:
        """The repeated inner stack; C3 variants override only this."""
        return nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, e=1.0) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


@register(rule=CSP)
class C3x(C3):
    """C3 with cross convolutions. YAML: ``[c2, shortcut=True, g=1, e=0.5]``."""

    def inner(self, c_: int, n: int, shortcut: bool, g: int) -> nn.Module:
        return nn.Sequential(*(CrossConv(c_, c_, 3, 1, g, 1.0, shortcut) for _ in range(n)))


@register(rule=CSP)
class C3Ghost(C3):
    """C3 with Ghost bottlenecks (GhostNet, CVPR 2020). YAML: ``[c2, shortcut=True, g=1, e=0.5]``."""

    def inner(self, c_: int, n: int, shortcut: bool, g: int) -> nn.Module:
        return nn.Sequential(*(GhostBottleneck(c_, c_) for _ in range(n)))


@register(rule=CSP)
class C3TR(C3):
    """C3 with a transformer block (Dosovitskiy et al., ViT, ICLR 2021). YAML: ``[c2, shortcut=True]``."""

    def inner(self, c_: int, n: int, shortcut: bool, g: int) -> nn.Module:
        return TransformerBlock(c_, c_, 4, n)


@register(rule=CONV)
class C3SPP(C3):
    """C3 with an SPP inner block. YAML: ``[c2, k=(5, 9, 13), n=1, shortcut=True, g=1, e=0.5]``."""

    def __init__(self, c1: int, c2: int, k=(5, 9, 13), n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5):
        self.spp_kernels = tuple(k)
        super().__init__(c1, c2, n, shortcut, g, e)

    def inner(self, c_: int, n: int, shortcut: bool, g: int) -> nn.Module:
        return SPP(c_, c_, self.spp_kernels)


@register(rule=CONV)
class GhostBottleneck(nn.Module):
    """Ghost bottleneck (GhostNet, CVPR 2020). YAML: ``[c2, k=3, s=1]``."""

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1):
        super().__init__()
        c_ = c2 // 2
        self.conv = nn.Sequential(
            GhostConv(c1, c_, 1, 1),
            DWConv(c_, c_, k, s, act=False) if s == 2 else nn.Identity(),
            GhostConv(c_, c2, 1, 1, act=False),
        )
        self.shortcut = (
            nn.Sequential(DWConv(c1, c1, k, s, act=False), Conv(c1, c2, 1, 1, act=False)) if s == 2 else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.shortcut(x)


class TransformerLayer(nn.Module):
    """Transformer encoder layer without LayerNorm, as YOLOv5 uses it."""

    def __init__(self, c: int, num_heads: int):
        super().__init__()
        self.q = nn.Linear(c, c, bias=False)
        self.k = nn.Linear(c, c, bias=False)
        self.v = nn.Linear(c, c, bias=False)
        self.ma = nn.MultiheadAttention(embed_dim=c, num_heads=num_heads)
        self.fc1 = nn.Linear(c, c, bias=False)
        self.fc2 = nn.Linear(c, c, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ma(self.q(x), self.k(x), self.v(x))[0] + x
        return self.fc2(self.fc1(x)) + x


@register(rule=CONV)
class TransformerBlock(nn.Module):
    """Vision transformer block on the flattened feature map. YAML: ``[c2, num_heads, num_layers]``."""

    def __init__(self, c1: int, c2: int, num_heads: int, num_layers: int):
        super().__init__()
        self.conv = Conv(c1, c2) if c1 != c2 else None
        self.linear = nn.Linear(c2, c2)
        self.tr = nn.Sequential(*(TransformerLayer(c2, num_heads) for _ in range(num_layers)))
        self.c2 = c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv is not None:
            x = self.conv(x)
        b, _, h, w = x.shape
        p = x.flatten(2).permute(2, 0, 1)
        return self.tr(p + self.linear(p)).permute(1, 2, 0).reshape(b, self.c2, h, w)
