"""FaceV2's blocks (Yu et al., "FaceV2: Exploring Occlusion and Scale Variation in Face Detection",
arXiv:2208.02019; iscyy/yoloair ``models/Models/FaceV2.py``): the receptive-field enhancement module in a
C3 (C3RFEM) and the separated-and-enhancement attention modules SEAM and MultiSEAM.

Module and attribute names follow YOLOAir so that parameter counts and ``state_dict`` keys match.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from yolo_attn.nn.blocks.csp import C3
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import CSP, SameWidth


class TridentBlock(nn.Module):
    """Three branches sharing one 1x1 and one 3x3 kernel at dilations 1, 2, 3, each residual (TridentNet:
    Li, Chen, Wang, Zhang, "Scale-Aware Trident Networks for Object Detection", ICCV 2019, arXiv:1901.01892;
    as FaceV2's RFEM uses it). Returns the three branch outputs."""

    def __init__(self, c1: int, c2: int, e: float = 0.5, dilations: tuple[int, ...] = (1, 2, 3)):
        super().__init__()
        c_ = int(c2 * e)
        self.dilations = dilations
        self.share_weightconv1 = nn.Parameter(torch.empty(c_, c1, 1, 1))
        self.share_weightconv2 = nn.Parameter(torch.empty(c2, c_, 3, 3))
        nn.init.kaiming_uniform_(self.share_weightconv1, nonlinearity="relu")
        nn.init.kaiming_uniform_(self.share_weightconv2, nonlinearity="relu")
        self.bn1 = nn.BatchNorm2d(c_)
        self.bn2 = nn.BatchNorm2d(c2)
        self.act = nn.SiLU()

    def branch(self, x: torch.Tensor, dilation: int) -> torch.Tensor:
        y = self.act(self.bn1(F.conv2d(x, self.share_weightconv1)))
        y = self.bn2(F.conv2d(y, self.share_weightconv2, padding=dilation, dilation=dilation))
        return self.act(y + x)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.branch(x, d) for d in self.dilations]


class RFEM(nn.Module):
    """Receptive-field enhancement module (Yu et al., "FaceV2: Exploring Occlusion and Scale Variation in
    Face Detection", arXiv:2208.02019): a trident block's branches summed with the input, BN, SiLU."""

    def __init__(self, c1: int, c2: int, e: float = 0.5):
        super().__init__()
        self.layer = nn.Sequential(TridentBlock(c1, c2, e=e))
        self.bn = nn.BatchNorm2d(c2)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(sum(self.layer(x)) + x))


@register(rule=CSP)
class C3RFEM(C3):
    """C3 with RFEM blocks inside (FaceV2, arXiv:2208.02019). YAML: ``[c2, shortcut=True, e=0.5]``;
    number = RFEM blocks. Example: ``[-1, 3, C3RFEM, [1024, False]]``."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, e: float = 0.5):
        self.rfem_e = e
        super().__init__(c1, c2, n, shortcut, e=e)

    def inner(self, c_: int, n: int, shortcut: bool, g: int) -> nn.Module:
        return nn.Sequential(*(RFEM(c_, c_, self.rfem_e) for _ in range(n)))



class Residual(nn.Module):
    """``fn(x) + x``."""

    def __init__(self, fn: nn.Module):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x) + x


def depthwise_mixer(c: int) -> nn.Sequential:
    """SEAM's channel-and-space mixer: residual (3x3 depth-wise conv, GELU, BN), then 1x1 conv, GELU, BN."""
    return nn.Sequential(
        Residual(nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, groups=c), nn.GELU(), nn.BatchNorm2d(c))),
        nn.Conv2d(c, c, 1), nn.GELU(), nn.BatchNorm2d(c),
    )


def channel_gate(c: int, reduction: int) -> nn.Sequential:
    """Bias-free two-layer MLP with a sigmoid, as in SE."""
    return nn.Sequential(
        nn.Linear(c, c // reduction, bias=False), nn.ReLU(inplace=True), nn.Linear(c // reduction, c, bias=False),
        nn.Sigmoid(),
    )


@register(rule=SameWidth())
class SEAM(nn.Module):
    """Separated and enhancement attention module (FaceV2, arXiv:2208.02019): ``n`` depth-wise mixers, global
    pooling, an SE-style MLP, and ``x * exp(gate)``. YAML: ``[c2=c1, n, reduction=16]``.
    Example: ``[17, 1, SEAM, [256, 1, 16]]``."""

    def __init__(self, c1: int, c2: int, n: int, reduction: int = 16):
        super().__init__()
        self.DCovN = nn.Sequential(*(depthwise_mixer(c1) for _ in range(n)))
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = channel_gate(c1, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(self.avg_pool(self.DCovN(x)).flatten(1))
        return x * torch.exp(y)[..., None, None]


@register(rule=SameWidth())
class MultiSEAM(nn.Module):
    """SEAM over three patch sizes (FaceV2, arXiv:2208.02019): each branch patchifies (p x p conv, stride p),
    then runs ``depth`` mixers; the pooled branches and the pooled input are averaged into the gate.
    YAML: ``[c2=c1, depth, kernel_size=3, patch_size=[3, 5, 7], reduction=16]``.
    Example: ``[21, 1, MultiSEAM, [128, 1, 3, [6, 7, 8], 16]]``."""

    def __init__(self, c1: int, c2: int, depth: int, kernel_size: int = 3, patch_size=(3, 5, 7), reduction: int = 16):
        super().__init__()
        if kernel_size != 3:
            raise ValueError(f"MultiSEAM supports kernel_size 3 only (YOLOAir's padding), got {kernel_size!r}")
        for i, p in enumerate(patch_size):
            stem = [nn.Conv2d(c1, c1, p, p), nn.GELU(), nn.BatchNorm2d(c1)]
            setattr(self, f"DCovN{i}", nn.Sequential(*stem, *(depthwise_mixer(c1) for _ in range(depth))))
        self.branches = len(patch_size)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = channel_gate(c1, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = [self.avg_pool(getattr(self, f"DCovN{i}")(x)) for i in range(self.branches)]
        y = self.fc((sum(pooled) + self.avg_pool(x)).flatten(1) / (self.branches + 1))
        return x * torch.exp(y)[..., None, None]
