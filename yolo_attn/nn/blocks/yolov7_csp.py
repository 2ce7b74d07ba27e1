"""CSP and ResNet-style blocks of YOLOv7's ``cfg/baseline`` models (YOLOR-CSP/-P6..-D6, CSP-ResNet/ResNeXt,
Scaled-YOLOv4's YOLOv4-CSP).

Papers: Wang, Liao, Wu, Chen, Hsieh, Yeh, "CSPNet", CVPRW 2020 (arXiv:1911.11929); Wang, Bochkovskiy, Liao,
"Scaled-YOLOv4", CVPR 2021 (arXiv:2011.08036); Wang, Yeh, Liao, "YOLOR", arXiv:2105.04206; He et al., ResNet
(CVPR 2016); Xie et al., ResNeXt (CVPR 2017). Attribute names (``cv1``..``cv4``, ``m``, ``pool``) follow
WongKinYiu/yolov7 ``models/common.py`` so that its checkpoints load by key.

The three CSP layouts differ in where the cross-stage split happens:

* A: two 1x1 branches from the input, the inner stack on one; fused by a 1x1 (the C3 layout).
* B: one 1x1 first; the inner stack and a 1x1 both read its output (hidden width = ``c2``).
* C: as A, with an extra 1x1 after the inner stack (Scaled-YOLOv4's CSP).

The inner stack is a chain of :class:`Bottleneck` (``BottleneckCSP*``), of ResNet bottlenecks :class:`Res`
with a half-width middle (``ResCSP*``) or of ResNeXt bottlenecks with a full-width grouped middle, 32 groups
by default (``ResXCSP*``).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from yolo_attn.nn.blocks.conv import Conv
from yolo_attn.nn.blocks.csp import Bottleneck
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import CONV, CSP


@register(rule=CONV)
class Stem(nn.Module):
    """CSP-ResNet stem of YOLOv7's r50/x50-csp: a stride-2 3x3 conv, then a stride-2 (1x1, 3x3) branch and a
    2x2 max-pool branch, concatenated and fused by a 1x1 (output at stride 4).

    YAML: ``[c2]``; YOLOv7's further arguments ``k, s, p, g, act`` are accepted and unused, as there.
    """

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p=None, g: int = 1, act: bool = True):
        super().__init__()
        c_ = c2 // 2
        self.cv1 = Conv(c1, c_, 3, 2)
        self.cv2 = Conv(c_, c_, 1, 1)
        self.cv3 = Conv(c_, c_, 3, 2)
        self.pool = nn.MaxPool2d(2, stride=2)
        self.cv4 = Conv(2 * c_, c2, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        return self.cv4(torch.cat((self.cv3(self.cv2(x)), self.pool(x)), 1))


@register(rule=CONV)
class Res(nn.Module):
    """ResNet bottleneck (He et al., CVPR 2016): 1x1 down to ``c2 * e``, 3x3 (groups ``g``), 1x1 up, with a
    residual when ``shortcut`` and the widths match. YAML: ``[c2, shortcut=True, g=1, e=0.5]``."""

    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_, c_, 3, 1, g=g)
        self.cv3 = Conv(c_, c2, 1, 1)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv3(self.cv2(self.cv1(x)))
        return x + y if self.add else y


@register(rule=CONV)
class ResX(Res):
    """ResNeXt bottleneck (Xie et al., CVPR 2017): the Res bottleneck with 32 groups by default.
    YAML: ``[c2, shortcut=True, g=32, e=0.5]``."""

    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 32, e: float = 0.5):
        super().__init__(c1, c2, shortcut, g, e)


class _YOLOv7CSP(nn.Module):
    """Shared constructor of YOLOv7's CSP blocks. A layout subclass builds its convolutions in :meth:`layout`;
    a family subclass picks the inner unit and the defaults of ``shortcut`` and ``g`` by class attributes
    (``None`` in the constructor means the family default, so explicit YAML values still win)."""

    unit: ClassVar[type[nn.Module]] = Bottleneck
    unit_expansion: ClassVar[float] = 1.0
    default_shortcut: ClassVar[bool] = True
    default_groups: ClassVar[int] = 1

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool | None = None, g: int | None = None,
                 e: float = 0.5):
        super().__init__()
        c_ = self.layout(c1, c2, e)
        shortcut = self.default_shortcut if shortcut is None else shortcut
        g = self.default_groups if g is None else g
        self.m = nn.Sequential(*(self.unit(c_, c_, shortcut, g, e=self.unit_expansion) for _ in range(n)))

    def layout(self, c1: int, c2: int, e: float) -> int:
        """Build the 1x1 convolutions around the inner stack; return the inner stack's width."""
        raise NotImplementedError


@register(rule=CSP)
class BottleneckCSPA(_YOLOv7CSP):
    """CSP layout A (CSPNet; YOLOR-P6..-D6 backbones): ``cv3(cat(m(cv1(x)), cv2(x)))``, hidden ``c2 * e``.
    YAML: ``[c2, shortcut=True, g=1, e=0.5]``; number = inner repeats."""

    def layout(self, c1: int, c2: int, e: float) -> int:
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.cv3 = Conv(2 * c_, c2, 1, 1)
        return c_

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


@register(rule=CSP)
class BottleneckCSPB(_YOLOv7CSP):
    """CSP layout B (Scaled-YOLOv4's CSP-PAN necks): ``x1 = cv1(x); cv3(cat(m(x1), cv2(x1)))``, hidden ``c2``.
    YAML: ``[c2, shortcut=False, g=1, e=0.5]`` (``e`` unused, as in YOLOv7); number = inner repeats."""

    default_shortcut: ClassVar[bool] = False

    def layout(self, c1: int, c2: int, e: float) -> int:
        self.cv1 = Conv(c1, c2, 1, 1)
        self.cv2 = Conv(c2, c2, 1, 1)
        self.cv3 = Conv(2 * c2, c2, 1, 1)
        return c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        return self.cv3(torch.cat((self.m(x), self.cv2(x)), 1))


@register(rule=CSP)
class BottleneckCSPC(_YOLOv7CSP):
    """CSP layout C (Scaled-YOLOv4's CSPDarknet stages): ``cv4(cat(cv3(m(cv1(x))), cv2(x)))``, hidden ``c2 * e``.
    YAML: ``[c2, shortcut=True, g=1, e=0.5]``; number = inner repeats."""

    def layout(self, c1: int, c2: int, e: float) -> int:
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.cv3 = Conv(c_, c_, 1, 1)
        self.cv4 = Conv(2 * c_, c2, 1, 1)
        return c_

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv4(torch.cat((self.cv3(self.m(self.cv1(x))), self.cv2(x)), 1))


class _ResFamily:
    """Inner units of the ``ResCSP*`` blocks: ResNet bottlenecks with a half-width middle; shortcut on."""

    unit: ClassVar[type[nn.Module]] = Res
    unit_expansion: ClassVar[float] = 0.5
    default_shortcut: ClassVar[bool] = True


class _ResXFamily(_ResFamily):
    """Inner units of the ``ResXCSP*`` blocks: ResNeXt bottlenecks, full-width middle, 32 groups by default."""

    unit_expansion: ClassVar[float] = 1.0
    default_groups: ClassVar[int] = 32


@register(rule=CSP)
class ResCSPA(_ResFamily, BottleneckCSPA):
    """CSP layout A over ResNet bottlenecks. YAML: ``[c2, shortcut=True, g=1, e=0.5]``."""


@register(rule=CSP)
class ResCSPB(_ResFamily, BottleneckCSPB):
    """CSP layout B over ResNet bottlenecks (CSP-ResNet50's PAN). YAML: ``[c2, shortcut=True, g=1, e=0.5]``."""


@register(rule=CSP)
class ResCSPC(_ResFamily, BottleneckCSPC):
    """CSP layout C over ResNet bottlenecks (CSP-ResNet50's stages). YAML: ``[c2, shortcut=True, g=1, e=0.5]``."""


@register(rule=CSP)
class ResXCSPA(_ResXFamily, BottleneckCSPA):
    """CSP layout A over ResNeXt bottlenecks. YAML: ``[c2, shortcut=True, g=32, e=0.5]``."""


@register(rule=CSP)
class ResXCSPB(_ResXFamily, BottleneckCSPB):
    """CSP layout B over ResNeXt bottlenecks (CSP-ResNeXt50's PAN). YAML: ``[c2, shortcut=True, g=32, e=0.5]``."""


@register(rule=CSP)
class ResXCSPC(_ResXFamily, BottleneckCSPC):
    """CSP layout C over ResNeXt bottlenecks (CSP-ResNeXt50's stages). YAML: ``[c2, shortcut=True, g=32, e=0.5]``."""


__all__ = [
    "Stem", "Res", "ResX", "BottleneckCSPA", "BottleneckCSPB", "BottleneckCSPC",
    "ResCSPA", "ResCSPB", "ResCSPC", "ResXCSPA", "ResXCSPB", "ResXCSPC",
]
