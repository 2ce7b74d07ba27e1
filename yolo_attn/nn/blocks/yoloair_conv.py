"""YOLOAir's convolution blocks (iscyy/yoloair ``models/common.py``, ``models/Models/Litemodel.py``,
``models/Models/slimneck.py``): CBH, GSConv, space_to_depth and the MobileNetV3 bottleneck.

Module and attribute names follow YOLOAir so that parameter counts and ``state_dict`` keys match.
"""

from __future__ import annotations

import torch
from torch import nn

from yolo_attn.nn.blocks.conv import Conv
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import CONV, ChannelFunction


@register(rule=CONV)
class CBH(nn.Module):
    """Conv + BatchNorm + Hardswish, PP-LCNet's basic layer (Cui et al., "PP-LCNet: A Lightweight CPU
    Convolutional Neural Network", arXiv:2109.15099). YAML: ``[c2, k, s, g=1]``.
    Example: ``[-1, 1, CBH, [32, 3, 2]]``."""

    def __init__(self, c1: int, c2: int, k: int, s: int, g: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, (k - 1) // 2, groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.hardswish = nn.Hardswish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hardswish(self.bn(self.conv(x)))


@register(rule=CONV)
class GSConv(nn.Module):
    """GSConv (Li et al., "Slim-neck by GSConv: A better design paradigm of detector architectures for
    autonomous vehicles", arXiv:2206.02424): a dense conv to ``c2/2``, a 5x5 depth-wise conv of it, both
    concatenated and channel-shuffled. Mish activations as in the slim-neck code.
    YAML: ``[c2, k=1, s=1, g=1, act=True]``. Example: ``[-1, 1, GSConv, [256, 3, 2]]``."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, g: int = 1, act: bool = True):
        super().__init__()
        c_ = c2 // 2
        self.cv1 = Conv(c1, c_, k, s, None, g, act=nn.Mish() if act else False)
        self.cv2 = Conv(c_, c_, 5, 1, None, c_, act=nn.Mish() if act else False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.cv1(x)
        y = torch.cat((x1, self.cv2(x1)), 1)
        b, c, h, w = y.shape
        y = y.view(b, c // 2, 2, h, w)  # shuffle: the even channels first, then the odd ones
        return torch.cat((y[:, :, 0], y[:, :, 1]), 1)


@register(rule=ChannelFunction(lambda c_in, args: 4 * c_in[0], "[dimension=1]"))
class space_to_depth(nn.Module):  # noqa: N801 - YOLOAir's YAML name
    """Space-to-depth of SPD-Conv (Sunkara, Luo, "No More Strided Convolutions or Pooling", ECML PKDD 2022,
    arXiv:2208.03641): (b, c, h, w) -> (b, 4c, h/2, w/2). YAML: ``[dimension=1]`` (unused, as in YOLOAir).
    Example: ``[-1, 1, space_to_depth, [1]]``."""

    def __init__(self, dimension: int = 1):
        super().__init__()
        self.d = dimension

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]), 1)


class Hswish(nn.Module):
    """Hard swish written as ``relu6(x + 3) / 6`` (MobileNetV3's h-sigmoid form, as YOLOAir writes it)."""

    def __init__(self):
        super().__init__()
        self.relu = nn.ReLU6()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x + 3) / 6


class SELayer(nn.Module):
    """MobileNetV3's squeeze-excitation: average pool, Linear -> ReLU -> Linear -> hard gate (``reduction`` 4)."""

    def __init__(self, c: int, reduction: int = 4):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(c, c // reduction), nn.ReLU(inplace=True), nn.Linear(c // reduction, c), Hswish()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(self.avg_pool(x).flatten(1))[..., None, None]


@register(rule=CONV)
class mobilev3_bneck(nn.Module):  # noqa: N801 - YOLOAir's YAML name
    """MobileNetV3 inverted bottleneck (Howard et al., "Searching for MobileNetV3", ICCV 2019,
    arXiv:1905.02244): optional 1x1 expansion, k x k depth-wise conv, optional SE, 1x1 projection;
    h-swish or ReLU; residual when shapes allow. YAML: ``[c2, hidden, k, s, use_se, use_hs]``.
    Example: ``[-1, 1, mobilev3_bneck, [24, 64, 3, 2, 0, 0]]``."""

    hswish, squeeze_excite = Hswish, SELayer

    def __init__(self, c1: int, c2: int, hidden: int, k: int, s: int, use_se: bool, use_hs: bool):
        super().__init__()
        if s not in (1, 2):
            raise ValueError(f"{type(self).__name__} stride must be 1 or 2, got {s!r}")
        self.identity = s == 1 and c1 == c2
        act = self.hswish if use_hs else nn.ReLU
        expand = [] if c1 == hidden else [nn.Conv2d(c1, hidden, 1, bias=False), nn.BatchNorm2d(hidden), act()]
        depthwise = [nn.Conv2d(hidden, hidden, k, s, (k - 1) // 2, groups=hidden, bias=False), nn.BatchNorm2d(hidden)]
        se = self.squeeze_excite(hidden) if use_se else nn.Sequential()
        middle = [act(), se] if c1 == hidden else [se, act()]
        self.conv = nn.Sequential(
            *expand, *depthwise, *middle, nn.Conv2d(hidden, c2, 1, bias=False), nn.BatchNorm2d(c2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.identity else y


class SqueezeExcite(nn.Module):
    """SE with 1x1 convs (``conv1`` -> ReLU -> ``conv2`` -> ``gate``), reduction 4: PP-LCNet's (SiLU gate,
    as YOLOAir writes it) and ESNet's (hard-sigmoid gate)."""

    def __init__(self, c: int, gate: nn.Module, reduction: int = 4):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv1 = nn.Conv2d(c, c // reduction, 1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(c // reduction, c, 1)
        self.gate = gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.conv2(self.relu(self.conv1(self.avg_pool(x)))))


@register(rule=CONV)
class LC_Block(nn.Module):  # noqa: N801 - YOLOAir's YAML name
    """PP-LCNet's depth-wise separable block (arXiv:2109.15099): k x k depth-wise CBH, optional SE, 1x1 CBH.
    YAML: ``[c2, s, k, use_se=False]``. Example: ``[-1, 1, LC_Block, [256, 2, 5, True]]``."""

    def __init__(self, c1: int, c2: int, s: int, k: int, use_se: bool = False):
        super().__init__()
        self.use_se = use_se
        self.dw_conv = CBH(c1, c1, k, s, g=c1)
        if use_se:
            self.se = SqueezeExcite(c1, nn.SiLU())
        self.pw_conv = CBH(c1, c2, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dw_conv(x)
        return self.pw_conv(self.se(x) if self.use_se else x)


@register(rule=CONV)
class Dense(nn.Module):
    """PP-LCNet's head convolution (arXiv:2109.15099): k x k conv without BN, Hardswish, dropout.
    YAML: ``[c2, k, dropout]``. Example: ``[-1, 1, Dense, [512, 1, 0.2]]``."""

    def __init__(self, c1: int, c2: int, k: int, dropout: float):
        super().__init__()
        self.dense_conv = nn.Conv2d(c1, c2, k, 1, 0, bias=False)
        self.hardswish = nn.Hardswish()
        self.dropout = nn.Dropout(p=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.hardswish(self.dense_conv(x)))


def conv_bn_act(c1: int, c2: int, k: int, s: int = 1, g: int = 1, act: bool = True) -> list[nn.Module]:
    """Conv2d (no bias, 'same' padding) + BatchNorm2d (+ Hardswish) as a list, for ESNet's indexed Sequentials."""
    layers = [nn.Conv2d(c1, c2, k, s, k // 2, groups=g, bias=False), nn.BatchNorm2d(c2)]
    return layers + [nn.Hardswish(inplace=True)] if act else layers


class ESGhostConv(nn.Module):
    """Ghost convolution as ESNet uses it (GhostNet, CVPR 2020): 1x1 Conv to ``c2/2``, then a 3x3 depth-wise Conv."""

    def __init__(self, c1: int, c2: int, k: int = 3):
        super().__init__()
        self.cv1 = Conv(c1, c2 // 2, 1, 1)
        self.cv2 = Conv(c2 // 2, c2 // 2, k, 1, None, c2 // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv1(x)
        return torch.cat((y, self.cv2(y)), 1)


def channel_shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    """ShuffleNet's channel shuffle."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


@register(rule=CONV)
class ES_Bottleneck(nn.Module):  # noqa: N801 - YOLOAir's YAML name
    """Enhanced ShuffleNet block of PP-PicoDet's ESNet (Yu et al., "PP-PicoDet", arXiv:2111.00902). Stride 1:
    half the channels pass, the other half go through a Ghost conv + SE + 1x1, then channel shuffle. Stride 2:
    two down-sampling branches (depth-wise + 1x1; 1x1 + depth-wise + SE + 1x1) fused by depth-wise + 1x1.
    All branches are built whatever the stride, as in YOLOAir. YAML: ``[c2, s]``.
    Example: ``[-1, 3, ES_Bottleneck, [96, 1]]``."""

    def __init__(self, c1: int, c2: int, s: int):
        super().__init__()
        if s not in (1, 2):
            raise ValueError(f"ES_Bottleneck stride must be 1 or 2, got {s!r}")
        self.stride = s
        c_ = c2 // 2
        if s > 1:
            self.branch1 = nn.Sequential(*conv_bn_act(c1, c1, 3, s, c1, act=False), *conv_bn_act(c1, c_, 1))
        self.branch2 = nn.Sequential(
            *conv_bn_act(c1 if s > 1 else c_, c_, 1), *conv_bn_act(c_, c_, 3, s, c_, act=False),
            SqueezeExcite(c_, nn.Hardsigmoid()), *conv_bn_act(c_, c_, 1),
        )
        self.branch3 = nn.Sequential(ESGhostConv(c_, c_), SqueezeExcite(c_, nn.Hardsigmoid()), *conv_bn_act(c_, c_, 1))
        self.branch4 = nn.Sequential(*conv_bn_act(c2, c2, 3, 1, c2, act=False), *conv_bn_act(c2, c2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            return channel_shuffle(torch.cat((x1, self.branch3(x2)), 1))
        return self.branch4(torch.cat((self.branch1(x), self.branch2(x)), 1))


@register(rule=CONV)
class DWConvblock(nn.Module):
    """Depth-wise separable convolution (Howard et al., MobileNets, arXiv:1704.04861): k x k depth-wise
    conv + BN + ReLU, then 1x1 conv + BN + ReLU (PP-PicoDet's neck). YAML: ``[c2, k, s]``.
    Example: ``[-1, 1, DWConvblock, [192, 5, 2]]``."""

    def __init__(self, c1: int, c2: int, k: int, s: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c1, c1, k, s, k // 2, groups=c1, bias=False)
        self.bn1 = nn.BatchNorm2d(c1)
        self.conv2 = nn.Conv2d(c1, c2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c2)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn2(self.conv2(self.act(self.bn1(self.conv1(x))))))


@register(rule=ChannelFunction(lambda c_in, args: sum(c_in) // 2, "[alpha=0.5]"))
class ADD(nn.Module):
    """Weighted sum of two equal-shaped inputs, ``x0 + alpha * x1`` (PP-PicoDet's neck in YOLOAir).
    YAML: ``[alpha=0.5]`` with two ``from`` inputs. Example: ``[[-1, 7], 1, ADD, [1]]``."""

    def __init__(self, alpha: float = 0.5):
        super().__init__()
        self.a = alpha

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        return torch.add(x[0], x[1], alpha=self.a)


class SeBlock(nn.Module):
    """SE with 1x1 convs under the keys ``Excitation.FC1`` / ``Excitation.FC2`` and a sigmoid gate (YOLOAir's
    MobileNetV3 and PP-LCNet backbones)."""

    def __init__(self, c: int, reduction: int = 4):
        super().__init__()
        self.Squeeze = nn.AdaptiveAvgPool2d(1)
        self.Excitation = nn.Sequential()
        self.Excitation.add_module("FC1", nn.Conv2d(c, c // reduction, 1))
        self.Excitation.add_module("ReLU", nn.ReLU())
        self.Excitation.add_module("FC2", nn.Conv2d(c // reduction, c, 1))
        self.Excitation.add_module("Sigmoid", nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.Excitation(self.Squeeze(x))


@register(rule=CONV)
class MobileNetV3_InvertedResidual(mobilev3_bneck):  # noqa: N801 - YOLOAir's YAML name
    """:class:`mobilev3_bneck` with torch's Hardswish and a sigmoid-gated SE (YOLOAir's MobileNetV3-Small
    backbone). YAML: ``[c2, hidden, k, s, use_se, use_hs]``.
    Example: ``[-1, 1, MobileNetV3_InvertedResidual, [24, 72, 3, 2, 0, 0]]``."""

    hswish, squeeze_excite = nn.Hardswish, SeBlock


@register(rule=CONV)
class conv_bn_hswish(CBH):  # noqa: N801 - YOLOAir's YAML name
    """3x3 Conv + BN + Hardswish, MobileNetV3's stem (arXiv:1905.02244): :class:`CBH` with k = 3.
    YAML: ``[c2, s]``. Example: ``[-1, 1, conv_bn_hswish, [16, 2]]``."""

    def __init__(self, c1: int, c2: int, s: int):
        super().__init__(c1, c2, 3, s)


@register(rule=CONV)
class DepthSepConv(nn.Module):
    """PP-LCNet's depth-wise separable conv (arXiv:2109.15099): k x k depth-wise conv + BN + Hardswish,
    optional SE (reduction 16), 1x1 conv + BN + Hardswish. YAML: ``[c2, k, s, use_se]``.
    Example: ``[-1, 1, DepthSepConv, [32, 3, 1, False]]``."""

    def __init__(self, c1: int, c2: int, k: int, s: int, use_se: bool):
        super().__init__()
        self.dw_sp = nn.Sequential(
            nn.Conv2d(c1, c1, k, s, (k - 1) // 2, groups=c1, bias=False), nn.BatchNorm2d(c1), nn.Hardswish(),
            SeBlock(c1, reduction=16) if use_se else nn.Sequential(),
            nn.Conv2d(c1, c2, 1, bias=False), nn.BatchNorm2d(c2), nn.Hardswish(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dw_sp(x)


@register(rule=CONV)
class Conv_maxpool(nn.Module):  # noqa: N801 - YOLOAir's YAML name
    """ShuffleNetV2's stem (Ma et al., "ShuffleNet V2", ECCV 2018, arXiv:1807.11164): 3x3 stride-2 conv + BN +
    ReLU, then 3x3 stride-2 max-pool. YAML: ``[c2]``. Example: ``[-1, 1, Conv_maxpool, [24]]``."""

    def __init__(self, c1: int, c2: int):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(c1, c2, 3, 2, 1, bias=False), nn.BatchNorm2d(c2), nn.ReLU(inplace=True))
        self.maxpool = nn.MaxPool2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.conv(x))


@register(rule=CONV)
class ShuffleNetV2_Model(nn.Module):  # noqa: N801 - YOLOAir's YAML name
    """ShuffleNetV2 unit (arXiv:1807.11164). Stride 1: half the channels pass, the other half go through
    1x1 -> 3x3 depth-wise -> 1x1; stride 2: two down-sampling branches. Then channel shuffle.
    YAML: ``[c2, s]``. Example: ``[-1, 3, ShuffleNetV2_Model, [116, 1]]``."""

    def __init__(self, c1: int, c2: int, s: int):
        super().__init__()
        if s not in (1, 2) or (s == 1 and c1 != c2):
            raise ValueError(f"ShuffleNetV2_Model needs stride 2, or stride 1 with c1 == c2; got {c1}->{c2}, s={s}")
        self.stride = s
        c_ = c2 // 2
        self.branch1 = nn.Sequential(
            nn.Conv2d(c1, c1, 3, s, 1, groups=c1), nn.BatchNorm2d(c1),
            nn.Conv2d(c1, c_, 1, bias=False), nn.BatchNorm2d(c_), nn.ReLU(inplace=True),
        ) if s == 2 else nn.Sequential()
        self.branch2 = nn.Sequential(
            nn.Conv2d(c1 if s == 2 else c_, c_, 1, bias=False), nn.BatchNorm2d(c_), nn.ReLU(inplace=True),
            nn.Conv2d(c_, c_, 3, s, 1, groups=c_), nn.BatchNorm2d(c_),
            nn.Conv2d(c_, c_, 1, bias=False), nn.BatchNorm2d(c_), nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            return channel_shuffle(torch.cat((x1, self.branch2(x2)), 1))
        return channel_shuffle(torch.cat((self.branch1(x), self.branch2(x)), 1))


@register(rule=ChannelFunction(lambda c_in, args: 4 * c_in[0], "[]"))
class DWT(nn.Module):
    """One-level Haar discrete wavelet transform (Mallat, "A Theory for Multiresolution Signal Decomposition",
    TPAMI 1989; the db1 DWT of YOLOR's ``DWT`` layer): (b, c, h, w) -> (b, 4c, h/2, w/2), the low band halved
    followed, per channel, by the three detail bands halved and shifted by 0.5. No parameters.
    Example: ``[-1, 1, DWT, []]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b, c, d = x[..., ::2, ::2], x[..., ::2, 1::2], x[..., 1::2, ::2], x[..., 1::2, 1::2]
        low = (a + b + c + d) / 2
        details = torch.stack(((a - b + c - d) / 2, (a + b - c - d) / 2, (a - b - c + d) / 2), 2)
        return torch.cat((low / 2, details.flatten(1, 2) / 2 + 0.5), 1)


@register(rule=CONV)
class Involution(nn.Module):
    """Involution (Li et al., "Involution: Inverting the Inherence of Convolution for Visual Recognition",
    CVPR 2021, arXiv:2103.06255): a k x k kernel generated per position (from the optionally average-pooled
    input through two 1x1 Convs) and shared by groups of 16 channels. The output keeps the input width whatever
    ``c2`` says, as in YOLOAir. YAML: ``[c2, k, s]``.
    Example: ``[-1, 1, Involution, [128, 3, 2]]``."""

    def __init__(self, c1: int, c2: int, k: int, s: int):
        super().__init__()
        if c1 % 16:
            raise ValueError(f"Involution needs input channels divisible by 16, got {c1}")
        self.kernel_size, self.stride, self.c1 = k, s, c1
        self.group_channels, self.groups = 16, c1 // 16
        self.conv1 = Conv(c1, c1 // 4, 1)
        self.conv2 = Conv(c1 // 4, k * k * self.groups, 1, 1)
        if s > 1:
            self.avgpool = nn.AvgPool2d(s, s)
        self.unfold = nn.Unfold(k, 1, (k - 1) // 2, s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.conv2(self.conv1(self.avgpool(x) if self.stride > 1 else x))
        b, _, h, w = weight.shape
        weight = weight.view(b, self.groups, 1, self.kernel_size**2, h, w)
        patches = self.unfold(x).view(b, self.groups, self.group_channels, self.kernel_size**2, h, w)
        return (weight * patches).sum(3).view(b, self.c1, h, w)
