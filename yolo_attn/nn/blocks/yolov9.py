"""GELAN blocks of YOLOv9 (Wang, Yeh, Liao, "YOLOv9: Learning What You Want to Learn Using Programmable Gradient
Information", arXiv:2402.13616, 2024), laid out as Ultralytics implements them (ultralytics/ultralytics
``nn/modules/block.py``, ``nn/modules/conv.py``) so that its YOLOv9 checkpoints load by key.

- RepNCSPELAN4: the paper's GELAN stage: a 1x1 split, two chained branches (each a CSP stage of re-parameterisable
  bottlenecks, then a 3x3 conv), every intermediate map concatenated and fused by a 1x1 conv.
- ELAN1: the same aggregation with plain 3x3 convs as branches (yolov9t/s).
- AConv, ADown: down-sampling by average pooling, then a strided conv (ADown: half of the channels through a strided
  3x3 conv, the other half through max pooling and a 1x1 conv).
- SPPELAN: spatial pyramid pooling as an ELAN: three chained max pools, all maps concatenated.
- CBLinear, CBFuse: the paper's auxiliary reversible branch as yolov9e builds it: CBLinear projects one backbone map
  into several maps at once (its output is a tuple), CBFuse resizes the picked one of each CBLinear to a second
  backbone's map and sums them with it.

Every YAML line here reads as Ultralytics' ``parse_model`` reads it: ``[c2, *rest]`` with only ``c2`` width-scaled
(the hidden widths as written), CBLinear's widths as written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from yolo_attn.nn.blocks.conv import Conv, autopad, fuse_conv_and_bn
from yolo_attn.nn.blocks.csp import C3, Bottleneck
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import CONV, LayerContext, Resolved, YamlRule


def _index(value: Any) -> bool:
    """An int >= 0 (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class RepConvN(nn.Module):
    """RepVGG-style 3x3 conv (Ding et al., "RepVGG", CVPR 2021) in Ultralytics' layout (its ``RepConv``): a 3x3
    Conv+BN and a 1x1 Conv+BN (``conv1``, ``conv2``, both linear), plus an identity BatchNorm ``bn`` when asked
    for and shapes allow, summed, then SiLU. SiLU is fixed, as in Ultralytics, whatever the YAML's ``activation``.
    :meth:`fuse` folds the branches into one 3x3 conv ``conv``."""

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1, p: int = 1, g: int = 1,
                 act: bool | nn.Module = True, bn: bool = False):
        super().__init__()
        if k != 3 or p != 1:
            raise ValueError(f"RepConvN needs a 3x3 kernel with padding 1, got k={k}, p={p}")
        self.groups = g
        self.act = nn.SiLU() if act is True else act if isinstance(act, nn.Module) else nn.Identity()
        self.bn = nn.BatchNorm2d(c1) if bn and c1 == c2 and s == 1 else None
        self.conv1: Conv | None = Conv(c1, c2, 3, s, p=1, g=g, act=False)  # None once folded into ``conv``
        self.conv2: Conv | None = Conv(c1, c2, 1, s, p=0, g=g, act=False)
        self.conv: nn.Conv2d | None = None  # the folded conv, after fuse()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv is not None:
            return self.act(self.conv(x))
        assert self.conv1 is not None and self.conv2 is not None  # unfused: the branches
        y = self.conv1(x) + self.conv2(x)
        return self.act(y + self.bn(x) if self.bn is not None else y)

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold the branches into the single 3x3 conv ``conv`` with bias (inference only)."""
        if self.conv is not None:
            return
        assert self.conv1 is not None and self.conv2 is not None  # unfused: the branches
        self.conv1.fuse()
        self.conv2.fuse()
        fused = self.conv1.conv
        assert fused.bias is not None and self.conv2.conv.bias is not None  # Conv.fuse makes convs with bias
        fused.weight += F.pad(self.conv2.conv.weight, [1, 1, 1, 1])
        fused.bias += self.conv2.conv.bias
        if self.bn is not None:
            c, per_group = fused.in_channels, fused.in_channels // self.groups
            identity = nn.Conv2d(c, c, 3, 1, 1, groups=self.groups, bias=False).to(fused.weight)
            identity.weight.zero_()
            channels = torch.arange(c, device=fused.weight.device)
            identity.weight[channels, channels % per_group, 1, 1] = 1.0
            folded = fuse_conv_and_bn(identity, self.bn)
            assert folded.bias is not None
            fused.weight += folded.weight
            fused.bias += folded.bias
        self.conv = fused
        self.conv1 = self.conv2 = self.bn = None


class RepBottleneck(Bottleneck):
    """Ultralytics' bottleneck (3x3 then 3x3, residual when shapes allow) whose first conv is a :class:`RepConvN`
    (YOLOv9's RepNBottleneck)."""

    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1, e: float = 0.5,
                 k: tuple[int, int] = (3, 3)):
        super().__init__(c1, c2, shortcut, g, e=e, k=k)
        self.cv1 = RepConvN(c1, int(c2 * e), k[0], 1)


class RepCSP(C3):
    """C3 (CSPNet) whose inner blocks are :class:`RepBottleneck` s (YOLOv9's RepNCSP)."""

    def inner(self, c_: int, n: int, shortcut: bool, g: int) -> nn.Module:
        return nn.Sequential(*(RepBottleneck(c_, c_, shortcut, g, e=1.0) for _ in range(n)))


class _ELANAggregation(nn.Module):
    """``cv1`` (1x1 to ``c3``) split in two halves; the second half runs through ``cv2`` then ``cv3`` (``c4`` wide
    each); ``cv4`` (1x1) fuses both halves and both branch outputs. Subclasses choose the branches."""

    def __init__(self, c1: int, c2: int, c3: int, c4: int, n: int = 1):
        super().__init__()
        if c3 % 2:
            raise ValueError(f"{type(self).__name__} splits its hidden width c3 in halves, but c3 = {c3} is odd")
        self.c = c3 // 2
        self.cv1 = Conv(c1, c3, 1, 1)
        self.cv2 = self.branch(self.c, c4, n)
        self.cv3 = self.branch(c4, c4, n)
        self.cv4 = Conv(c3 + 2 * c4, c2, 1, 1)

    def branch(self, c_in: int, c4: int, n: int) -> nn.Module:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = list(self.cv1(x).chunk(2, 1))
        y.extend(m(y[-1]) for m in (self.cv2, self.cv3))
        return self.cv4(torch.cat(y, 1))


@register(rule=CONV)
class RepNCSPELAN4(_ELANAggregation):
    """YOLOv9's GELAN stage (Wang, Yeh, Liao, "YOLOv9: Learning What You Want to Learn Using Programmable Gradient
    Information", arXiv:2402.13616, 2024): each of the two chained branches is a RepCSP of ``n`` re-parameterisable
    bottlenecks, then a 3x3 conv. YAML: ``[c2, c3, c4, n=1]`` (``c3``: hidden width, ``c4``: branch width, both as
    written); ``number`` stacks copies."""

    def branch(self, c_in: int, c4: int, n: int) -> nn.Module:
        return nn.Sequential(RepCSP(c_in, c4, n), Conv(c4, c4, 3, 1))


@register(rule=CONV)
class ELAN1(_ELANAggregation):
    """YOLOv9's light GELAN stage (arXiv:2402.13616; yolov9t/s): the branches are single 3x3 convs.
    YAML: ``[c2, c3, c4]`` (``c3``, ``c4`` as written)."""

    def __init__(self, c1: int, c2: int, c3: int, c4: int):
        super().__init__(c1, c2, c3, c4)

    def branch(self, c_in: int, c4: int, n: int) -> nn.Module:
        return Conv(c_in, c4, 3, 1)


def _smooth(x: torch.Tensor) -> torch.Tensor:
    """2x2 average pool with stride 1 (one row and column fewer), YOLOv9's step before down-sampling."""
    return F.avg_pool2d(x, 2, 1, 0, False, True)


@register(rule=CONV)
class AConv(nn.Module):
    """YOLOv9's down-sampling (arXiv:2402.13616): a 2x2 stride-1 average pool, then a 3x3 stride-2 conv.
    YAML: ``[c2]``."""

    def __init__(self, c1: int, c2: int):
        super().__init__()
        self.cv1 = Conv(c1, c2, 3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv1(_smooth(x))


@register(rule=CONV)
class ADown(nn.Module):
    """YOLOv9's two-path down-sampling (arXiv:2402.13616): after a 2x2 stride-1 average pool, one half of the
    channels through a 3x3 stride-2 conv, the other through a 3x3 stride-2 max pool and a 1x1 conv; each path gives
    ``c2 / 2`` channels. YAML: ``[c2]`` (input and output widths even)."""

    def __init__(self, c1: int, c2: int):
        super().__init__()
        if c1 % 2 or c2 % 2:
            raise ValueError(f"ADown halves its input and output widths, which must be even: got {c1} -> {c2}")
        self.c = c2 // 2
        self.cv1 = Conv(c1 // 2, self.c, 3, 2, 1)
        self.cv2 = Conv(c1 // 2, self.c, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = _smooth(x).chunk(2, 1)
        return torch.cat((self.cv1(a), self.cv2(F.max_pool2d(b, 3, 2, 1))), 1)


@register(rule=CONV)
class SPPELAN(nn.Module):
    """YOLOv9's SPP-ELAN (arXiv:2402.13616): a 1x1 conv to ``c3``, three chained ``k x k`` max pools, the four maps
    concatenated and fused by a 1x1 conv. YAML: ``[c2, c3, k=5]`` (``c3`` as written)."""

    def __init__(self, c1: int, c2: int, c3: int, k: int = 5):
        super().__init__()
        self.c = c3
        self.cv1 = Conv(c1, c3, 1, 1)
        self.cv2, self.cv3, self.cv4 = (nn.MaxPool2d(k, 1, k // 2) for _ in range(3))
        self.cv5 = Conv(4 * c3, c2, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.cv1(x)]
        y.extend(m(y[-1]) for m in (self.cv2, self.cv3, self.cv4))
        return self.cv5(torch.cat(y, 1))


@dataclass(frozen=True)
class SplitWidthsRule(YamlRule):
    """``[[c2, c2', ...], *rest]`` -> ``Block(c1, [c2, c2', ...], *rest)``, widths as written (Ultralytics scales
    none); the layer's output is one map per width, its channel count their sum. One copy only."""

    signature: str = "[[c2, ...], k=1, s=1, p=None, g=1]"

    def resolve(self, args: list[Any], ctx: LayerContext) -> Resolved:
        widths = args[0] if args else None
        if not isinstance(widths, list) or not widths or not all(_index(c) and c > 0 for c in widths):
            raise ValueError(f"expects a list of output widths (positive ints) as its first arg, got {args!r}")
        if ctx.number != 1:
            raise ValueError(f"outputs several maps, so it cannot be stacked: number must be 1, got {ctx.number}")
        return Resolved([ctx.c_in[0], list(widths), *args[1:]], sum(widths), 1)


@register(rule=SplitWidthsRule())
class CBLinear(nn.Module):
    """YOLOv9's CBLinear (arXiv:2402.13616, the auxiliary reversible branch of yolov9e): one conv with bias projects
    its input to ``sum(c2s)`` channels, returned split into a tuple of ``len(c2s)`` maps for later :class:`CBFuse`
    layers. YAML: ``[[c2, ...], k=1, s=1, p=None, g=1]`` (widths as written)."""

    def __init__(self, c1: int, c2s: list[int], k: int = 1, s: int = 1, p: int | None = None, g: int = 1):
        super().__init__()
        self.c2s = list(c2s)
        self.conv = nn.Conv2d(c1, sum(self.c2s), k, s, autopad(k, p), groups=g, bias=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.conv(x).split(self.c2s, dim=1)


@dataclass(frozen=True)
class PickFromEachRule(YamlRule):
    """``[[i, j, ...]]`` with one index per input but the last: ``Block([i, j, ...])``; output channels are the
    last input's. One copy only."""

    signature: str = "[[index into each CBLinear input]]"

    def resolve(self, args: list[Any], ctx: LayerContext) -> Resolved:
        picks = args[0] if len(args) == 1 else None
        if not isinstance(picks, list) or not all(_index(i) for i in picks):
            raise ValueError(f"expects one list of indices (ints >= 0), got {args!r}")
        if len(picks) != len(ctx.c_in) - 1:
            inputs = len(ctx.c_in) - 1
            raise ValueError(f"has {len(picks)} indices for {inputs} CBLinear inputs (every 'from' but the last)")
        if ctx.number != 1:
            raise ValueError(f"cannot be stacked: number must be 1, got {ctx.number}")
        return Resolved([list(picks)], ctx.c_in[-1], 1)


@register(rule=PickFromEachRule())
class CBFuse(nn.Module):
    """YOLOv9's CBFuse (arXiv:2402.13616, yolov9e): from each CBLinear output but the last input, the map at its
    index, resized (nearest) to the last input's size; the sum of those maps and the last input. YAML: ``[[i, ...]]``,
    one index per CBLinear in ``from``; ``from`` ends with the map fused into."""

    def __init__(self, idx: list[int]):
        super().__init__()
        self.idx = list(idx)

    def forward(self, xs: list[Any]) -> torch.Tensor:
        *branches, target = xs
        if not all(isinstance(b, (list, tuple)) for b in branches):
            raise TypeError("every input but the last must be a CBLinear output (a tuple of maps)")
        size = target.shape[2:]
        picked = [F.interpolate(b[i], size=size, mode="nearest") for i, b in zip(self.idx, branches, strict=True)]
        return torch.stack([*picked, target]).sum(0)


__all__ = ["RepConvN", "RepBottleneck", "RepCSP", "RepNCSPELAN4", "ELAN1", "AConv", "ADown", "SPPELAN", "CBLinear",
           "CBFuse"]
