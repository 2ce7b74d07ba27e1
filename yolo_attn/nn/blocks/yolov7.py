"""Blocks of YOLOv7 (Wang, Bochkovskiy, Liao, "YOLOv7: Trainable bag-of-freebies...", CVPR 2023).

Structure and attribute names follow WongKinYiu/yolov7 ``models/common.py`` so that YOLOv7
checkpoints load by key (``rbr_dense``, ``rbr_1x1``, ``rbr_identity``, ``rbr_reparam``, ``cv1``...).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from yolo_attn.nn.blocks.conv import Conv, autopad, fuse_conv_and_bn, make_activation
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import CONV, CSP, PASS_THROUGH, ChannelFunction


@register(rule=PASS_THROUGH)
class MP(nn.Module):
    """Max-pool with stride = kernel (halves the resolution for k=2). YAML: ``[k=2]``."""

    def __init__(self, k: int = 2):
        super().__init__()
        self.m = nn.MaxPool2d(kernel_size=k, stride=k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.m(x)


@register(rule=PASS_THROUGH)
class SP(nn.Module):
    """'Same'-padded max-pool, the branches of YOLOv7-tiny's SPP. YAML: ``[k=3, s=1]``."""

    def __init__(self, k: int = 3, s: int = 1):
        super().__init__()
        self.m = nn.MaxPool2d(kernel_size=k, stride=s, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.m(x)


@register(rule=ChannelFunction(lambda c_in, args: 4 * c_in[0], signature="[]"))
class ReOrg(nn.Module):
    """Space to depth by pixel parity: (b, c, h, w) -> (b, 4c, h/2, w/2), the YOLOv7-W6/E6 stem. YAML: ``[]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]), 1)


@register(rule=CSP)
class DownC(nn.Module):
    """Down-sampling by a strided 3x3 conv branch and a max-pool + 1x1 conv branch, concatenated.

    YAML: ``[c2, k=2]`` (``k`` is the stride); the YAML ``number`` is accepted and unused, as in YOLOv7.
    """

    def __init__(self, c1: int, c2: int, n: int = 1, k: int = 2):
        super().__init__()
        self.cv1 = Conv(c1, c1, 1, 1)
        self.cv2 = Conv(c1, c2 // 2, 3, k)
        self.cv3 = Conv(c1, c2 // 2, 1, 1)
        self.mp = nn.MaxPool2d(kernel_size=k, stride=k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.cv2(self.cv1(x)), self.cv3(self.mp(x))), 1)


@register(rule=CSP)
class SPPCSPC(nn.Module):
    """CSP spatial pyramid pooling (CSPNet + SPPNet) of YOLOv7.

    YAML: ``[c2, shortcut=False, g=1, e=0.5, k=(5, 9, 13)]``. ``n`` (the YAML ``number``), ``shortcut`` and
    ``g`` are accepted and unused, as in YOLOv7, so positional YAML args keep their meaning.
    """

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = False, g: int = 1, e: float = 0.5,
                 k=(5, 9, 13)):
        super().__init__()
        c_ = int(2 * c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2: nn.Module = Conv(c1, c_, 1, 1)  # YOLOAir's SPPCSP makes it a plain conv
        self.cv3 = Conv(c_, c_, 3, 1)
        self.cv4 = Conv(c_, c_, 1, 1)
        self.m = nn.ModuleList(nn.MaxPool2d(kernel_size=x, stride=1, padding=x // 2) for x in k)
        self.cv5 = Conv(4 * c_, c_, 1, 1)
        self.cv6 = Conv(c_, c_, 3, 1)
        self.cv7 = Conv(2 * c_, c2, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.cv4(self.cv3(self.cv1(x)))
        y1 = self.cv6(self.cv5(torch.cat([x1] + [m(x1) for m in self.m], 1)))
        return self.cv7(torch.cat((y1, self.cv2(x)), 1))


def _conv_bn(c1: int, c2: int, k: int, s: int, p: int, g: int) -> nn.Sequential:
    # Indexed Sequential (``rbr_dense.0.weight``, ``rbr_dense.1.running_mean``) as in YOLOv7.
    return nn.Sequential(nn.Conv2d(c1, c2, k, s, p, groups=g, bias=False), nn.BatchNorm2d(c2))


@register(rule=CONV)
class RepConv(nn.Module):
    """RepVGG-style conv (Ding et al., "RepVGG", CVPR 2021): 3x3+BN, 1x1+BN and identity BN, summed.

    :meth:`fuse` re-parameterises the three branches into the single conv ``rbr_reparam``.
    YAML: ``[c2, k=3, s=1, p=None, g=1, act=True]``; ``deploy=True`` builds the fused form directly.
    """

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1, p=None, g: int = 1,
                 act: bool | nn.Module = True, deploy: bool = False):
        super().__init__()
        if k != 3 or autopad(k, p) != 1:
            raise ValueError(f"RepConv needs a 3x3 kernel with padding 1, got k={k}, p={p}")
        self.groups = g
        self.in_channels = c1
        self.out_channels = c2
        self.act = make_activation(act)
        self.rbr_identity = nn.BatchNorm2d(c1) if c1 == c2 and s == 1 and not deploy else None
        self.rbr_dense = None if deploy else _conv_bn(c1, c2, 3, s, 1, g)
        self.rbr_1x1 = None if deploy else _conv_bn(c1, c2, 1, s, 0, g)
        self.rbr_reparam = nn.Conv2d(c1, c2, 3, s, 1, groups=g, bias=True) if deploy else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.rbr_reparam is not None:
            return self.act(self.rbr_reparam(x))
        assert self.rbr_dense is not None and self.rbr_1x1 is not None  # unfused: the branches
        y = self.rbr_dense(x) + self.rbr_1x1(x)
        if self.rbr_identity is not None:
            y = y + self.rbr_identity(x)
        return self.act(y)

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold the three branches into one 3x3 conv with bias (inference only)."""
        if self.rbr_reparam is not None:
            return
        assert self.rbr_dense is not None and self.rbr_1x1 is not None  # unfused: the branches
        fused = fuse_conv_and_bn(*self.rbr_dense)
        one = fuse_conv_and_bn(*self.rbr_1x1)
        assert fused.bias is not None and one.bias is not None  # fuse_conv_and_bn makes convs with bias
        fused.weight += F.pad(one.weight, [1, 1, 1, 1])
        fused.bias += one.bias
        if self.rbr_identity is not None:
            identity = fuse_conv_and_bn(self._identity_kernel(), self.rbr_identity)
            assert identity.bias is not None
            fused.weight += identity.weight
            fused.bias += identity.bias
        self.rbr_reparam = fused
        self.rbr_dense = self.rbr_1x1 = self.rbr_identity = None

    def _identity_kernel(self) -> nn.Conv2d:
        """A grouped 3x3 conv that returns its input unchanged."""
        assert self.rbr_dense is not None
        conv = self.rbr_dense[0]
        assert isinstance(conv, nn.Conv2d)
        identity = nn.Conv2d(self.in_channels, self.in_channels, 3, 1, 1, groups=self.groups, bias=False)
        identity.to(device=conv.weight.device, dtype=conv.weight.dtype)
        identity.weight.zero_()
        per_group = self.in_channels // self.groups
        channels = torch.arange(self.in_channels, device=conv.weight.device)
        identity.weight[channels, channels % per_group, 1, 1] = 1.0
        return identity


@register(rule=ChannelFunction(lambda c_in, args: c_in[0], signature="[dimension=0]"))
class Shortcut(nn.Module):
    """Residual sum of two layers' outputs: ``[[-1, j], 1, Shortcut, [1]]`` -> ``x[0] + x[1]``."""

    def __init__(self, dimension: int = 0):
        super().__init__()
        self.d = dimension

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        return x[0] + x[1]


__all__ = ["MP", "SP", "ReOrg", "DownC", "SPPCSPC", "RepConv", "Shortcut"]
