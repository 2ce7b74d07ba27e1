"""Backbone and neck blocks of YOLOv10 (Wang et al., "YOLOv10: Real-Time End-to-End Object Detection",
arXiv:2405.14458, 2024), with the sub-module names of Ultralytics' implementation (ultralytics/ultralytics
``nn/modules/block.py``) so that its checkpoints load by key.

- RepVGGDW: a depth-wise 7x7 + 3x3 pair (RepVGG-style, folded into one 7x7 for inference): the large-kernel
  convolution of the paper's rank-guided block design.
- CIB: the compact inverted block (depth-wise 3x3, point-wise, depth-wise, point-wise, depth-wise).
- C2fCIB: C2f whose inner blocks are CIBs (the paper's rank-guided stages).
- PSA: partial self-attention on one half of the channels (the paper's efficient global representation).

YOLOv10's down-sampling (``SCDown``) lives with the other Ultralytics blocks in ``ultralytics.py``; the attention of
``PSA`` is YOLO11's :class:`~yolo_attn.nn.blocks.ultralytics.PositionSensitiveAttention`.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from yolo_attn.nn.blocks.conv import Conv
from yolo_attn.nn.blocks.ultralytics import C2f, HalfRefined, PositionSensitiveAttention
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import CONV, CSP, LiteralChannels


@register(rule=LiteralChannels(positions=(0,)))
class RepVGGDW(nn.Module):
    """Depth-wise 7x7 and 3x3 convolutions (each with BatchNorm) summed, then SiLU (Wang et al., YOLOv10,
    arXiv:2405.14458); ``fuse()`` folds both branches into one 7x7 convolution. YAML: ``[c1]``, the input
    channels as written."""

    def __init__(self, ed: int):
        super().__init__()
        self.dim = ed
        self.conv = Conv(ed, ed, 7, 1, 3, g=ed, act=False)
        self.conv1: Conv | None = Conv(ed, ed, 3, 1, 1, g=ed, act=False)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.act(y + self.conv1(x) if self.conv1 is not None else y)

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold both BatchNorms, then the 3x3 kernel (zero-padded to 7x7) into the 7x7 one (inference only)."""
        if self.conv1 is None:
            return
        self.conv.fuse()
        self.conv1.fuse()
        large, small = self.conv.conv, self.conv1.conv
        assert large.bias is not None and small.bias is not None  # Conv.fuse makes convs with bias
        large.weight.add_(F.pad(small.weight, [2, 2, 2, 2]))
        large.bias.add_(small.bias)
        self.conv1 = None


@register(rule=LiteralChannels(positions=(0, 1)))
class CIB(nn.Module):
    """Compact inverted block (Wang et al., YOLOv10, arXiv:2405.14458): depth-wise 3x3, point-wise to ``2 * c2 * e``,
    depth-wise 3x3 (or :class:`RepVGGDW` when ``lk``), point-wise to ``c2``, depth-wise 3x3, with a residual when
    ``shortcut`` and the widths match. YAML: ``[c1, c2=c1, shortcut=True, e=0.5, lk=False]``, channels as written."""

    def __init__(self, c1: int, c2: int, shortcut: bool = True, e: float = 0.5, lk: bool = False):
        super().__init__()
        hidden = 2 * int(c2 * e)
        self.cv1 = nn.Sequential(
            Conv(c1, c1, 3, g=c1),
            Conv(c1, hidden, 1),
            RepVGGDW(hidden) if lk else Conv(hidden, hidden, 3, g=hidden),
            Conv(hidden, c2, 1),
            Conv(c2, c2, 3, g=c2),
        )
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv1(x)
        return x + y if self.add else y


@register(rule=CSP)
class C2fCIB(C2f):
    """C2f whose inner blocks are compact inverted blocks (Wang et al., YOLOv10, arXiv:2405.14458).
    YAML: ``[c2, shortcut=False, lk=False, g=1, e=0.5]``; number = CIBs (``g`` is accepted and unused, as in
    Ultralytics)."""

    depthwise_detect_head: ClassVar[bool] = True  # Ultralytics' Detect uses its depth-wise class branch with it

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = False, lk: bool = False, g: int = 1,
                 e: float = 0.5):
        self.large_kernel = lk
        super().__init__(c1, c2, n, shortcut, g, e)

    def inner(self, shortcut: bool, g: int) -> nn.Module:
        return CIB(self.c, self.c, shortcut, e=1.0, lk=self.large_kernel)


@register(rule=CONV)
class PSA(HalfRefined):
    """Partial self-attention (Wang et al., YOLOv10, arXiv:2405.14458): a 1x1 conv splits the input in two halves;
    one runs through position-sensitive multi-head self-attention and a 2x point-wise feed-forward (each
    residual); a 1x1 conv fuses both. YAML: ``[c2=c1, e=0.5]``; keeps its input channels."""

    def __init__(self, c1: int, c2: int, e: float = 0.5):
        super().__init__(c1, c2, e)
        self.attn = PositionSensitiveAttention(self.c, num_heads=max(self.c // 64, 1), attn_ratio=0.5)
        self.ffn = nn.Sequential(Conv(self.c, 2 * self.c, 1), Conv(2 * self.c, self.c, 1, act=False))

    def refine(self, half: torch.Tensor) -> torch.Tensor:
        half = half + self.attn(half)
        return half + self.ffn(half)
