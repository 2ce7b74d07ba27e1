"""YOLOAir's CSP variants (iscyy/yoloair ``models/common.py`` and ``models/Models/``): C3 with HorNet,
Contextual-Transformer, BoTNet or GCNet blocks inside, BottleneckCSPF and BottleneckCSP2 (slim-neck's VoVGSCSP is in
``yoloair_slimneck.py``).

Module and attribute names follow YOLOAir so that parameter counts and ``state_dict`` keys match.
CSP: Wang et al., "CSPNet: A New Backbone that can Enhance Learning Capability of CNN", CVPRW 2020.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from yolo_attn.nn.attention.botnet_mhsa import MHSA
from yolo_attn.nn.attention.global_context import GlobalContext
from yolo_attn.nn.blocks.conv import Conv
from yolo_attn.nn.blocks.csp import C3, Bottleneck, BottleneckCSP
from yolo_attn.nn.blocks.yoloair_backbones import HorBlock
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import CSP


@register(rule=CSP)
class C3HB(C3):
    """C3 with HorNet blocks inside (HorNet: Rao et al., NeurIPS 2022, arXiv:2207.14284; YOLOAir's CSP-HorBlock).
    YAML: ``[c2, shortcut=True, g=1, e=0.5]``; number = HorBlocks. Example: ``[-1, 3, C3HB, [1024]]``."""

    def inner(self, c_: int, n: int, shortcut: bool, g: int) -> nn.Module:
        return nn.Sequential(*(HorBlock(c_) for _ in range(n)))


@register(rule=CSP)
class BottleneckCSPF(BottleneckCSP):
    """YOLOR's BottleneckCSP without the 1x1 after the bottlenecks (Wang, Yeh, Liao, "You Only Learn One
    Representation", arXiv:2105.04206). YAML: ``[c2, shortcut=True, g=1, e=0.5]``; number = bottlenecks.
    Example: ``[-1, 3, BottleneckCSPF, [128]]``."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        del self.cv3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv4(self.act(self.bn(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))))


@register(rule=CSP)
class BottleneckCSP2(nn.Module):
    """Scaled-YOLOv4's CSP-2 block (Wang, Bochkovskiy, Liao, "Scaled-YOLOv4", CVPR 2021, arXiv:2011.08036):
    a 1x1 Conv, then bottlenecks (no shortcut by default) beside a plain 1x1 conv, BN + Mish over both, 1x1
    Conv. YAML: ``[c2, shortcut=False, g=1, e=0.5]`` (``e`` unused: the hidden width is ``c2``); number =
    bottlenecks. Example: ``[-1, 2, BottleneckCSP2, [256]]``."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = False, g: int = 1, e: float = 0.5):
        super().__init__()
        self.cv1 = Conv(c1, c2, 1, 1)
        self.cv2 = nn.Conv2d(c2, c2, 1, 1, bias=False)
        self.cv3 = Conv(2 * c2, c2, 1, 1)
        self.bn = nn.BatchNorm2d(2 * c2)
        self.act = nn.Mish()
        self.m = nn.Sequential(*(Bottleneck(c2, c2, shortcut, g, e=1.0) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.cv1(x)
        return self.cv3(self.act(self.bn(torch.cat((self.m(x1), self.cv2(x1)), 1))))


class SimplifiedCoT(nn.Module):
    """YOLOAir's simplified Contextual Transformer (Li et al., "Contextual Transformer Networks for Visual
    Recognition", TPAMI 2022, arXiv:2107.12292): static keys from a grouped k x k conv; from ``[keys, x]`` an
    embedding predicts k*k weights per channel, averaged and softmaxed over positions to weight the values;
    output keys + weighted values. YOLOAir names the class ``CoT``; here that YAML name is the official layer,
    :class:`~yolo_attn.nn.attention.cot.CoTAttention`, so this one is named for what it is."""

    def __init__(self, dim: int, kernel_size: int = 3, factor: int = 4):
        super().__init__()
        self.kernel_size = kernel_size
        self.key_embed = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=4, bias=False),
            nn.BatchNorm2d(dim),
            nn.ReLU(),
        )
        self.value_embed = nn.Sequential(nn.Conv2d(dim, dim, 1, bias=False), nn.BatchNorm2d(dim))
        self.attention_embed = nn.Sequential(
            nn.Conv2d(2 * dim, 2 * dim // factor, 1, bias=False), nn.BatchNorm2d(2 * dim // factor), nn.ReLU(),
            nn.Conv2d(2 * dim // factor, kernel_size**2 * dim, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        keys = self.key_embed(x)
        values = self.value_embed(x).flatten(2)
        weights = self.attention_embed(torch.cat((keys, x), 1)).view(b, c, self.kernel_size**2, h * w).mean(2)
        return keys + (F.softmax(weights, -1) * values).view(b, c, h, w)


class CoTBottleneck(nn.Module):
    """1x1 Conv then :class:`SimplifiedCoT`, residual when shapes allow (YOLOAir's CoT3 inner block)."""

    def __init__(self, c1: int, c2: int, shortcut: bool = True, e: float = 1.0):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = SimplifiedCoT(c_, 3)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


@register(rule=CSP)
class CoT3(C3):
    """C3 with Contextual-Transformer bottlenecks (CoTNet, arXiv:2107.12292), as in YOLOAir.
    YAML: ``[c2, shortcut=True, g=1, e=0.5]``; number = bottlenecks. Example: ``[-1, 3, CoT3, [512]]``."""

    def inner(self, c_: int, n: int, shortcut: bool, g: int) -> nn.Module:
        return nn.Sequential(*(CoTBottleneck(c_, c_, shortcut) for _ in range(n)))


class BottleneckTransformer(nn.Module):
    """BoTNet bottleneck (Srinivas et al., "Bottleneck Transformers for Visual Recognition", CVPR 2021,
    arXiv:2101.11605) as YOLOAir writes it: 1x1 Conv, multi-head self-attention, residual. ``fc1`` is an
    unused Linear that YOLOAir's checkpoints carry."""

    def __init__(self, c: int, heads: int = 4, width: int = 20, height: int = 20):
        super().__init__()
        self.cv1 = Conv(c, c, 1, 1)
        self.cv2 = nn.Sequential(MHSA(c, width=width, height=height, heads=heads))
        self.shortcut = True
        self.fc1 = nn.Linear(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.cv2(self.cv1(x))


@register(rule=CSP)
class BoT3(C3):
    """C3 with BoTNet bottlenecks (arXiv:2101.11605). YAML: ``[c2, e=0.5, e2=1, w=20, h=20]``; number =
    bottlenecks (``e2`` must be 1, the only expansion YOLOAir's BoT3 builds). Example: ``[-1, 3, BoT3, [512]]``."""

    def __init__(self, c1: int, c2: int, n: int = 1, e: float = 0.5, e2: int = 1, w: int = 20, h: int = 20):
        if e2 != 1:
            raise ValueError(f"BoT3 supports expansion e2=1 only, got {e2!r}")
        self.resolution = (w, h)
        super().__init__(c1, c2, n, e=e)

    def inner(self, c_: int, n: int, shortcut: bool, g: int) -> nn.Module:
        return nn.Sequential(*(BottleneckTransformer(c_, 4, *self.resolution) for _ in range(n)))


@register(rule=CSP)
class C3GC(C3):
    """C3 whose shortcut branch passes a Global Context block first (GCNet: Cao et al., ICCVW 2019,
    arXiv:1904.11492; add and multiply fusions). YAML: ``[c2, shortcut=True, g=1, e=0.5]``.
    Example: ``[-1, 3, C3GC, [512]]``."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        self.gc = GlobalContext(c1, 0.25, fusion_types=("channel_add", "channel_mul"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(self.gc(x))), 1))
