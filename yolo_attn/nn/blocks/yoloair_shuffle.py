"""ShuffleNet's channel shuffle and YOLOAir's ShuffleNetV2 blocks (iscyy/yoloair ``models/common.py``).

Module and attribute names follow YOLOAir so that parameter counts and ``state_dict`` keys match.
"""

from __future__ import annotations

import torch
from torch import nn

from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import CONV


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle (Zhang et al., "ShuffleNet", CVPR 2018, arXiv:1707.01083): (b, g*n, h, w) with
    ``groups`` g -> the g channel groups interleaved (output channel ``j*g + i`` is input ``i*n + j``)."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


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
            return channel_shuffle(torch.cat((x1, self.branch2(x2)), 1), 2)
        return channel_shuffle(torch.cat((self.branch1(x), self.branch2(x)), 1), 2)
