"""PP-PicoDet as YOLOAir ships it (Yu et al., "PP-PicoDet: A Better Real-Time Object Detector on Mobile Devices",
arXiv:2111.00902; iscyy/yoloair ``models/common.py``): ESNet's Enhanced ShuffleNet block with its Ghost conv, and
the neck's depth-wise block and weighted sum. ESNet's squeeze-excitation is the zoo's
:class:`~yolo_attn.nn.attention.se.SE` in YOLOAir's layout.

Module and attribute names follow YOLOAir so that parameter counts and ``state_dict`` keys match.
"""

from __future__ import annotations

import torch
from torch import nn

from yolo_attn.nn.attention.se import CONV_PAIR, SE
from yolo_attn.nn.blocks.conv import Conv
from yolo_attn.nn.blocks.yoloair_shuffle import channel_shuffle
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import CONV, ChannelFunction


def conv_bn_act(c1: int, c2: int, k: int, s: int = 1, g: int = 1, act: bool = True) -> list[nn.Module]:
    """Conv2d (no bias, 'same' padding) + BatchNorm2d (+ Hardswish) as a list, for ESNet's indexed Sequentials."""
    layers = [nn.Conv2d(c1, c2, k, s, k // 2, groups=g, bias=False), nn.BatchNorm2d(c2)]
    return layers + [nn.Hardswish(inplace=True)] if act else layers


def esnet_se(c: int) -> SE:
    """ESNet's SE: 1x1 convs ``conv1``/``conv2`` with biases, reduction 4, hard-sigmoid gate."""
    return SE(c, 1 / 4, gate_layer=nn.Hardsigmoid, bias=True, layout=CONV_PAIR)


class ESGhostConv(nn.Module):
    """Ghost convolution as ESNet uses it (GhostNet, CVPR 2020): 1x1 Conv to ``c2/2``, then a 3x3 depth-wise Conv."""

    def __init__(self, c1: int, c2: int, k: int = 3):
        super().__init__()
        self.cv1 = Conv(c1, c2 // 2, 1, 1)
        self.cv2 = Conv(c2 // 2, c2 // 2, k, 1, None, c2 // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv1(x)
        return torch.cat((y, self.cv2(y)), 1)


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
            esnet_se(c_), *conv_bn_act(c_, c_, 1),
        )
        self.branch3 = nn.Sequential(ESGhostConv(c_, c_), esnet_se(c_), *conv_bn_act(c_, c_, 1))
        self.branch4 = nn.Sequential(*conv_bn_act(c2, c2, 3, 1, c2, act=False), *conv_bn_act(c2, c2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            return channel_shuffle(torch.cat((x1, self.branch3(x2)), 1), 2)
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
