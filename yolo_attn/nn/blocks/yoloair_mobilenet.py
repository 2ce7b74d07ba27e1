"""MobileNetV3 as YOLOAir ships it (Howard et al., "Searching for MobileNetV3", ICCV 2019, arXiv:1905.02244;
iscyy/yoloair ``models/common.py``, ``models/Models/Litemodel.py``): the stem and two inverted bottlenecks. Their
squeeze-excitation is the zoo's :class:`~yolo_attn.nn.attention.se.SE` in YOLOAir's layouts.

Module and attribute names follow YOLOAir so that parameter counts and ``state_dict`` keys match.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from yolo_attn.nn.attention.se import EXCITATION, SE
from yolo_attn.nn.blocks.yoloair_lcnet import CBH
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import CONV


@register(rule=CONV)
class mobilev3_bneck(nn.Module):  # noqa: N801 - YOLOAir's YAML name
    """MobileNetV3 inverted bottleneck (Howard et al., "Searching for MobileNetV3", ICCV 2019,
    arXiv:1905.02244): optional 1x1 expansion, k x k depth-wise conv, optional SE, 1x1 projection; h-swish or
    ReLU; residual when shapes allow. YAML: ``[c2, hidden, k, s, use_se, use_hs]``.
    Example: ``[-1, 1, mobilev3_bneck, [24, 64, 3, 2, 0, 0]]``.

    As in YOLOAir, the "h-swish" of ``use_hs`` is a hard *sigmoid* ``relu6(x + 3) / 6`` (what YOLOAir's class
    ``Hswish`` computes; the paper's hard swish is ``x * relu6(x + 3) / 6``), and the SE (biased ``nn.Linear``
    layers under ``fc.0``/``fc.2``, reduction 4) gates with the same hard sigmoid."""

    activation: type[nn.Module] = nn.Hardsigmoid  # with use_hs (ReLU without)
    squeeze_excite = partial(SE, rd_ratio=1 / 4, gate_layer=nn.Hardsigmoid, bias=True)

    def __init__(self, c1: int, c2: int, hidden: int, k: int, s: int, use_se: bool, use_hs: bool):
        super().__init__()
        if s not in (1, 2):
            raise ValueError(f"{type(self).__name__} stride must be 1 or 2, got {s!r}")
        self.identity = s == 1 and c1 == c2
        act = self.activation if use_hs else nn.ReLU
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


@register(rule=CONV)
class MobileNetV3_InvertedResidual(mobilev3_bneck):  # noqa: N801 - YOLOAir's YAML name
    """:class:`mobilev3_bneck` with torch's Hardswish and a sigmoid-gated SE (YOLOAir's MobileNetV3-Small
    backbone). YAML: ``[c2, hidden, k, s, use_se, use_hs]``.
    Example: ``[-1, 1, MobileNetV3_InvertedResidual, [24, 72, 3, 2, 0, 0]]``.

    The SE keeps YOLOAir's ``SeBlock`` keys ``Excitation.FC1``/``FC2``."""

    activation = nn.Hardswish
    squeeze_excite = partial(SE, rd_ratio=1 / 4, bias=True, layout=EXCITATION)


@register(rule=CONV)
class conv_bn_hswish(CBH):  # noqa: N801 - YOLOAir's YAML name
    """3x3 Conv + BN + Hardswish, MobileNetV3's stem (arXiv:1905.02244): :class:`CBH` with k = 3.
    YAML: ``[c2, s]``. Example: ``[-1, 1, conv_bn_hswish, [16, 2]]``."""

    def __init__(self, c1: int, c2: int, s: int):
        super().__init__(c1, c2, 3, s)
