"""YOLOAir's backbone blocks (iscyy/yoloair ``models/common.py`` and ``models/Models/``): HorNet and its
HorBlock, ConvNeXt stages, RepVGG and MobileOne blocks.

YOLOAir's whole-backbone layers (``ConvNeXt``, ``HorNet``) build the complete four-stage network on every
YAML line and run only stage ``index`` of it; they are reproduced that way here so that parameter counts
and ``state_dict`` keys (YOLOAir's attribute names) match YOLOAir's checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from yolo_attn.nn.blocks.yoloair import ConvNextBlock
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import CONV, ConvLike, LeadingChannels, LiteralChannels, SameWidth

ONE_BLOCK_SAME_WIDTH = SameWidth(pass_width=False, one_copy=True, signature="[c2=c1] (one block whatever number says)")


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of a (b, c, h, w) map (ConvNeXt's ``channels_first`` LayerNorm)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        return self.weight[:, None, None] * (x - mean) / torch.sqrt(var + self.eps) + self.bias[:, None, None]


@register("gnconv", rule=LiteralChannels((0,)))
class GnConv(nn.Module):
    """Recursive gated convolution g^nConv (Rao et al., "HorNet: Efficient High-Order Spatial Interactions
    with Recursive Gated Convolutions", NeurIPS 2022, arXiv:2207.14284). YAML: ``[c1, order=5]`` (the real
    input channels, as written). Example: ``[-1, 3, gnconv, [256]]``.

    A 1x1 projection to ``2 * dim`` splits into a gate and ``order`` depth-wise-convolved feature groups of
    widths ``dim / 2**(order-1), ..., dim``; the gate is multiplied by each group in turn, widened by 1x1
    convs ``pws`` between steps, then projected back by ``proj_out``. ``scale`` multiplies the depth-wise
    output (HorNet uses 1/3).
    """

    def __init__(self, dim: int, order: int = 5, scale: float = 1.0):
        super().__init__()
        self.order = order
        self.dims = [dim // 2**i for i in reversed(range(order))]
        self.proj_in = nn.Conv2d(dim, 2 * dim, 1)
        self.dwconv = nn.Conv2d(sum(self.dims), sum(self.dims), 7, padding=3, groups=sum(self.dims))
        self.proj_out = nn.Conv2d(dim, dim, 1)
        self.pws = nn.ModuleList(nn.Conv2d(self.dims[i], self.dims[i + 1], 1) for i in range(order - 1))
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, features = torch.split(self.proj_in(x), [self.dims[0], sum(self.dims)], dim=1)
        groups = torch.split(self.dwconv(features) * self.scale, self.dims, dim=1)
        y = gate * groups[0]
        for pw, group in zip(self.pws, groups[1:], strict=True):
            y = pw(y) * group
        return self.proj_out(y)


@register(rule=ONE_BLOCK_SAME_WIDTH)
class HorBlock(nn.Module):
    """HorNet block (Rao et al., NeurIPS 2022, arXiv:2207.14284): LayerNorm + g^nConv with layer scale, then
    LayerNorm + 4x MLP (GELU) with layer scale, both residual. YAML: ``[c2]`` with ``c2`` = input channels.

    YOLOAir passes the YAML ``number`` into the layer-scale slot, so ``[-1, 3, HorBlock, [512]]`` is one
    block there and here. Example: ``[-1, 3, HorBlock, [1024]]``.
    """

    def __init__(self, dim: int, layer_scale_init: float = 1e-6, gnconv: Callable[[int], nn.Module] = GnConv):
        super().__init__()
        self.norm1 = LayerNorm2d(dim)
        self.gnconv = gnconv(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma1 = nn.Parameter(layer_scale_init * torch.ones(dim))
        self.gamma2 = nn.Parameter(layer_scale_init * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.gamma1[:, None, None] * self.gnconv(self.norm1(x))
        y = self.pwconv2(self.act(self.pwconv1(self.norm2(x.permute(0, 2, 3, 1)))))
        return x + (self.gamma2 * y).permute(0, 3, 1, 2)


register(rule=ONE_BLOCK_SAME_WIDTH)(ConvNextBlock)


class PyramidBackbone(nn.Module):
    """A four-stage isotropic pyramid (ConvNeXt / HorNet layout): a 4x4 stride-4 patchify stem, then
    LayerNorm + 2x2 stride-2 conv between stages, widths ``dim_base * (1, 2, 4, 8)``.

    YOLOAir builds the whole network on each YAML line and runs only ``downsample_layers[index]`` and
    ``stages[index]``; weights are initialised as the papers do (truncated normal 0.02, zero bias).
    """

    def __init__(self, index: int, in_chans: int, depths: list[int], dim_base: int,
                 make_block: Callable[[int, int], nn.Module]):
        super().__init__()
        if not 0 <= index < 4 or len(depths) != 4:
            raise ValueError(f"expects a stage index 0..3 and four depths, got index {index!r}, depths {depths!r}")
        dims = [dim_base * 2**i for i in range(4)]
        self.index = index
        stem = nn.Sequential(nn.Conv2d(in_chans, dims[0], 4, 4), LayerNorm2d(dims[0]))
        self.downsample_layers = nn.ModuleList([stem])
        self.downsample_layers.extend(
            nn.Sequential(LayerNorm2d(dims[i]), nn.Conv2d(dims[i], dims[i + 1], 2, 2)) for i in range(3)
        )
        self.stages = nn.ModuleList(
            nn.Sequential(*(make_block(i, dims[i]) for _ in range(depth))) for i, depth in enumerate(depths)
        )
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages[self.index](self.downsample_layers[self.index](x))


@register(rule=LeadingChannels())
class ConvNeXt(PyramidBackbone):
    """ConvNeXt (Liu et al., "A ConvNet for the 2020s", CVPR 2022, arXiv:2201.03545), stage ``index`` of it.
    YAML: ``[c2, index, depths, dim_base, in_chans=3]`` with ``c2 = dim_base * 2**index``.

    Example: ``[-1, 1, ConvNeXt, [192, 1, [3, 3, 9, 3], 96]]``.
    """

    def __init__(self, index: int, depths: list[int], dim_base: int, in_chans: int = 3):
        super().__init__(index, in_chans, depths, dim_base, lambda stage, dim: ConvNextBlock(dim))


@register(rule=LeadingChannels())
class HorNet(PyramidBackbone):
    """HorNet (Rao et al., NeurIPS 2022, arXiv:2207.14284), stage ``index`` of it: g^nConv of order 2..5 in
    stages 1..4, scale 1/3. YAML: ``[c2, index, in_chans, depths, dim_base]``.

    Example: ``[-1, 1, HorNet, [32, 1, 3, [2, 3, 18, 2], 16]]``.
    """

    def __init__(self, index: int, in_chans: int, depths: list[int], dim_base: int):
        super().__init__(
            index, in_chans, depths, dim_base,
            lambda stage, dim: HorBlock(dim, gnconv=partial(GnConv, order=stage + 2, scale=1 / 3)),
        )


def conv_bn(c1: int, c2: int, k: int, s: int = 1, p: int = 0, g: int = 1) -> nn.Sequential:
    """Conv2d (no bias) + BatchNorm2d as a Sequential with keys ``conv`` and ``bn`` (RepVGG's branches)."""
    branch = nn.Sequential()
    branch.add_module("conv", nn.Conv2d(c1, c2, k, s, p, groups=g, bias=False))
    branch.add_module("bn", nn.BatchNorm2d(c2))
    return branch


@register(rule=CONV)
class RepVGGBlock(nn.Module):
    """RepVGG block (Ding et al., "RepVGG: Making VGG-style ConvNets Great Again", CVPR 2021,
    arXiv:2101.03697) in training form: 3x3 conv-BN + 1x1 conv-BN (+ BN identity when shapes allow), summed,
    then SiLU as YOLOAir uses it. YAML: ``[c2, k=3, s=1, p=1]``. Example: ``[-1, 1, RepVGGBlock, [128, 3, 2]]``.
    """

    activation: type[nn.Module] = nn.SiLU

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1, p: int = 1):
        super().__init__()
        self.nonlinearity = self.activation()
        self.se = nn.Identity()
        self.rbr_identity = nn.BatchNorm2d(c1) if c1 == c2 and s == 1 else None
        self.rbr_dense = conv_bn(c1, c2, k, s, p)
        self.rbr_1x1 = conv_bn(c1, c2, 1, s, p - k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.rbr_dense(x) + self.rbr_1x1(x)
        if self.rbr_identity is not None:
            y = y + self.rbr_identity(x)
        return self.nonlinearity(self.se(y))


@register(rule=CONV)
class RepVGGBlockv6(RepVGGBlock):
    """RepVGG block with ReLU, as YOLOv6 uses it (Li et al., "YOLOv6", arXiv:2209.02976; RepVGG,
    arXiv:2101.03697). YAML: ``[c2, k=3, s=1, p=1]``. Example: ``[-1, 1, RepVGGBlockv6, [64, 3, 2]]``."""

    activation = nn.ReLU


@register(rule=CONV)
class RepBlock(nn.Module):
    """YOLOv6's RepBlock (arXiv:2209.02976): ``n`` RepVGG (ReLU) blocks, the first changing the width.
    YAML: ``[c2, n=1]``; YOLOAir stacks ``number`` copies (keys ``<i>.conv1``), and so do we.
    Example: ``[-1, 6, RepBlock, [256]]``."""

    def __init__(self, c1: int, c2: int, n: int = 1):
        super().__init__()
        self.conv1 = RepVGGBlockv6(c1, c2)
        self.block = nn.Sequential(*(RepVGGBlockv6(c2, c2) for _ in range(n - 1))) if n > 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        return self.block(x) if self.block is not None else x


class ConvBranch(nn.Module):
    """:func:`conv_bn` under the key ``conv`` (MobileOne's depth-wise and point-wise branches)."""

    def __init__(self, c1: int, c2: int, k: int, s: int = 1, g: int = 1):
        super().__init__()
        self.conv = conv_bn(c1, c2, k, s, k // 2, g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


@register(rule=CONV)
class MobileOneBlock(nn.Module):
    """MobileOne block in training form (Vasu et al., "MobileOne: An Improved One millisecond Mobile
    Backbone", CVPR 2023, arXiv:2206.04040): ``k`` over-parameterised 3x3 depth-wise conv-BN branches + a 1x1
    depth-wise branch (+ BN identity), ReLU, then ``k`` 1x1 point-wise conv-BN branches (+ BN identity), ReLU.
    YAML: ``[c2, k, s=1]`` (further args accepted, unused).
    Example: ``[-1, 6, MobileOneBlock, [1024, 4, 1, False]]``."""

    def __init__(self, c1: int, c2: int, k: int, s: int = 1, *unused):
        super().__init__()
        self.k = k
        self.nonlinearity = nn.ReLU()
        self.se = nn.Identity()
        identity = c1 == c2 and s == 1
        self.dw_bn_layer = nn.BatchNorm2d(c1) if identity else None
        for i in range(k):
            setattr(self, f"dw_3x3_{i}", ConvBranch(c1, c1, 3, s, c1))
        self.dw_1x1 = ConvBranch(c1, c1, 1, s, c1)
        self.pw_bn_layer = nn.BatchNorm2d(c1) if identity else None
        for i in range(k):
            setattr(self, f"pw_1x1_{i}", ConvBranch(c1, c2, 1))

    def branches(self, x: torch.Tensor, prefix: str, identity: nn.Module | None) -> torch.Tensor:
        y = sum(getattr(self, f"{prefix}{i}")(x) for i in range(self.k))
        return y + identity(x) if identity is not None else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.nonlinearity(self.se(self.branches(x, "dw_3x3_", self.dw_bn_layer) + self.dw_1x1(x)))
        return self.nonlinearity(self.branches(x, "pw_1x1_", self.pw_bn_layer))


@register(rule=ConvLike(repeat_inside=True, stack_too=True, signature="[c2, k, s=1] (number -> blocks and copies)"))
class MobileOne(nn.Module):
    """A stack of ``n`` MobileOne blocks (arXiv:2206.04040), as YOLOAir writes it. YAML: ``[c2, k, s=1]``;
    YOLOAir passes ``number`` as the block count and also stacks ``number`` copies (``number**2`` blocks in
    all); so do we, for its parameter counts and checkpoints. Further args are accepted, unused.
    Example: ``[-1, 6, MobileOne, [128, 4, 1, False]]``."""

    def __init__(self, c1: int, c2: int, n: int, k: int, s: int = 1, *unused):
        super().__init__()
        self.m = nn.Sequential(*(MobileOneBlock(c1, c2, k, s) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.m(x)


__all__ = [
    "ConvNeXt", "GnConv", "HorBlock", "HorNet", "LayerNorm2d", "MobileOne", "MobileOneBlock", "PyramidBackbone",
    "RepBlock", "RepVGGBlock", "RepVGGBlockv6", "conv_bn",
]
