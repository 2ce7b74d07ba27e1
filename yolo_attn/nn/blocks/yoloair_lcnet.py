"""PP-LCNet as YOLOAir ships it (Cui et al., "PP-LCNet: A Lightweight CPU Convolutional Neural Network",
arXiv:2109.15099; iscyy/yoloair ``models/common.py``, ``models/Models/Litemodel.py``): CBH, LC_Block, Dense and
DepthSepConv. Their squeeze-excitation is the zoo's :class:`~yolo_attn.nn.attention.se.SE` in YOLOAir's layouts.

Module and attribute names follow YOLOAir so that parameter counts and ``state_dict`` keys match.
"""

from __future__ import annotations

import torch
from torch import nn

from yolo_attn.nn.attention.se import CONV_PAIR, EXCITATION, SE
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import CONV


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
class LC_Block(nn.Module):  # noqa: N801 - YOLOAir's YAML name
    """PP-LCNet's depth-wise separable block (arXiv:2109.15099): k x k depth-wise CBH, optional SE, 1x1 CBH.
    YAML: ``[c2, s, k, use_se=False]``. Example: ``[-1, 1, LC_Block, [256, 2, 5, True]]``.

    The SE (1x1 convs ``conv1``/``conv2``, reduction 4) gates with SiLU, as YOLOAir writes it."""

    def __init__(self, c1: int, c2: int, s: int, k: int, use_se: bool = False):
        super().__init__()
        self.use_se = use_se
        self.dw_conv = CBH(c1, c1, k, s, g=c1)
        if use_se:
            self.se = SE(c1, 1 / 4, gate_layer=nn.SiLU, bias=True, layout=CONV_PAIR)
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


@register(rule=CONV)
class DepthSepConv(nn.Module):
    """PP-LCNet's depth-wise separable conv (arXiv:2109.15099): k x k depth-wise conv + BN + Hardswish,
    optional SE (reduction 16), 1x1 conv + BN + Hardswish. YAML: ``[c2, k, s, use_se]``.
    Example: ``[-1, 1, DepthSepConv, [32, 3, 1, False]]``.

    The SE keeps YOLOAir's ``SeBlock`` keys ``Excitation.FC1``/``FC2``."""

    def __init__(self, c1: int, c2: int, k: int, s: int, use_se: bool):
        super().__init__()
        self.dw_sp = nn.Sequential(
            nn.Conv2d(c1, c1, k, s, (k - 1) // 2, groups=c1, bias=False), nn.BatchNorm2d(c1), nn.Hardswish(),
            SE(c1, 1 / 16, bias=True, layout=EXCITATION) if use_se else nn.Sequential(),
            nn.Conv2d(c1, c2, 1, bias=False), nn.BatchNorm2d(c2), nn.Hardswish(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dw_sp(x)
