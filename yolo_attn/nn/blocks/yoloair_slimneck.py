"""Slim-neck by GSConv as YOLOAir ships it (Li et al., "Slim-neck by GSConv: A better design paradigm of detector
architectures for autonomous vehicles", arXiv:2206.02424; iscyy/yoloair ``models/Models/slimneck.py``): GSConv,
the GS bottleneck and VoV-GSCSP.

Module and attribute names follow YOLOAir so that parameter counts and ``state_dict`` keys match.
"""

from __future__ import annotations

import torch
from torch import nn

from yolo_attn.nn.blocks.conv import Conv
from yolo_attn.nn.blocks.yoloair_shuffle import channel_shuffle
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import CONV, CSP


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
        return channel_shuffle(y, y.shape[1] // 2)  # pairs as groups: the even channels first, then the odd ones


class GSBottleneck(nn.Module):
    """Slim-neck's GS bottleneck (arXiv:2206.02424): two GSConvs (1x1) plus a 3x3 Conv shortcut. ``conv``, a
    3x3 GSConv pair, is built but unused, as in the slim-neck code that YOLOAir copies (its checkpoints carry it)."""

    def __init__(self, c1: int, c2: int):
        super().__init__()
        c_ = c2 // 2
        self.conv_lighting = nn.Sequential(GSConv(c1, c_, 1, 1), GSConv(c_, c2, 1, 1, act=False))
        self.conv = nn.Sequential(GSConv(c1, c_, 3, 1), GSConv(c_, c2, 3, 1, act=False))
        self.shortcut = Conv(c1, c2, 3, 1, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_lighting(x) + self.shortcut(x)


@register(rule=CSP)
class VoVGSCSP(nn.Module):
    """Slim-neck's VoV-GSCSP (Li et al., arXiv:2206.02424): one GS bottleneck on a 1x1 branch, concatenated
    with a 1x1 shortcut branch, fused by 1x1. ``number`` is accepted and unused, as in YOLOAir, and so is
    ``res``, a 3x3 Conv its checkpoints carry. YAML: ``[c2, shortcut=True, g=1, e=0.5]``.
    Example: ``[-1, 3, VoVGSCSP, [512, False]]``."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.gsb = GSBottleneck(c_, c_)
        self.res = Conv(c_, c_, 3, 1, act=False)
        self.cv3 = Conv(2 * c_, c2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.cv2(x), self.gsb(self.cv1(x))), 1))
