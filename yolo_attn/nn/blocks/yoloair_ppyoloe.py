"""PP-YOLOE's CSPRepResNet backbone and neck blocks as YOLOAir writes them (iscyy/yoloair
``models/Models/ppyolo.py``; Xu et al., "PP-YOLOE: An evolved version of YOLO", arXiv:2203.16250).

These YAML lines give input and output channels as written (no width gain): ``CSPResNet_CBS [c1, c2, ...]``,
``CSPResNet [c1, c2, n, stride, 'backbone'|'neck']``, ``ConvBNLayer [c1, c2, k, s, g, p]``,
``ResSPP [c1, c2, n]``; the output width is the second arg. Attribute names follow YOLOAir so that
parameter counts and ``state_dict`` keys match.
"""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import nn

from yolo_attn.nn.attention.effective_se import EffectiveSE
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import ChannelFunction

SECOND_ARG_CHANNELS = ChannelFunction(lambda c_in, args: args[1], "[c1, c2, *args] (as written)")
_ACTIVATIONS = {"swish": nn.SiLU, "silu": nn.SiLU, "relu": nn.ReLU, "hardsigmoid": nn.Hardsigmoid}


def activation(name: str | None) -> nn.Module:
    """PP-YOLOE's activation by name (``swish`` = SiLU); None -> Identity."""
    if name is None:
        return nn.Identity()
    if name not in _ACTIVATIONS:
        raise ValueError(f"unsupported activation {name!r} (one of {sorted(_ACTIVATIONS)})")
    return _ACTIVATIONS[name]()


@register(rule=SECOND_ARG_CHANNELS)
class ConvBNLayer(nn.Module):
    """Conv2d (no bias) + BatchNorm2d + activation, PaddleDetection's layout. YAML: ``[c1, c2, k=3, s=1, g=1,
    p=0, act='swish']`` (as written). Example: ``[-1, 1, ConvBNLayer, [96, 96, 3, 2, 1, 1]]``."""

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1, g: int = 1, p: int = 0, act: str | None = "swish"):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, p, groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class RepVggBlock(nn.Module):
    """PP-YOLOE's RepVGG block in training form (Ding et al., RepVGG, CVPR 2021): 3x3 and 1x1 conv-BN summed."""

    def __init__(self, c1: int, c2: int, act: str = "relu"):
        super().__init__()
        self.conv1 = ConvBNLayer(c1, c2, 3, p=1, act=None)
        self.conv2 = ConvBNLayer(c1, c2, 1, act=None)
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv1(x) + self.conv2(x))


class BasicBlock(nn.Module):
    """PP-YOLOE's residual block: 3x3 ConvBNLayer then a RepVGG block, plus the input when ``shortcut``."""

    def __init__(self, c: int, act: str = "relu", shortcut: bool = True):
        super().__init__()
        self.conv1 = ConvBNLayer(c, c, 3, p=1, act=act)
        self.conv2 = RepVggBlock(c, c, act=act)
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x))
        return x + y if self.shortcut else y


@register(rule=SECOND_ARG_CHANNELS)
class CSPResNet_CBS(nn.Module):  # noqa: N801 - YOLOAir's YAML name
    """PP-YOLOE's stem: three (or two) 3x3 ConvBNLayers, the first with stride 2. YAML: ``[c1, c2,
    use_large_stem=True, act='swish']``. Example: ``[-1, 1, CSPResNet_CBS, [3, 32, True]]``."""

    def __init__(self, c1: int = 3, c2: int = 64, use_large_stem: bool = True, act: str = "swish"):
        super().__init__()
        widths = [c1, c2 // 2, c2 // 2, c2] if use_large_stem else [3, c2 // 2, c2]
        self.stem = nn.Sequential(*(
            ConvBNLayer(a, b, 3, 2 if i == 0 else 1, p=1, act=act) for i, (a, b) in enumerate(pairwise(widths))
        ))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(x)


class CSPResStage(nn.Module):
    """CSPRepResNet stage: optional stride-2 3x3 down-sampling, two 1x1 branches (one through ``n`` basic
    blocks), concatenated, effective-SE (backbone only), 1x1 fusion. In the neck the branches read the input
    directly, the blocks have no shortcut and there is no SE."""

    def __init__(self, c1: int, c2: int, n: int, stride: int, infor: str = "backbone", act: str = "swish"):
        super().__init__()
        neck = infor == "neck"
        c_mid = c2 if neck else (c1 + c2) // 2
        c_in = c1 if neck else c_mid
        self.conv_down = ConvBNLayer(c1, c_mid, 3, 2, p=1, act=act) if stride == 2 else None
        self.conv1 = ConvBNLayer(c_in, c_mid // 2, 1, act=act)
        self.conv2 = ConvBNLayer(c_in, c_mid // 2, 1, act=act)
        self.blocks = nn.Sequential(*(BasicBlock(c_mid // 2, act, shortcut=not neck) for _ in range(n)))
        self.attn = None if neck else EffectiveSE(c_mid)
        self.conv3 = ConvBNLayer(c_mid, c2, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv_down is not None:
            x = self.conv_down(x)
        y = torch.cat((self.conv1(x), self.blocks(self.conv2(x))), 1)
        if self.attn is not None:
            y = self.attn(y)
        return self.conv3(y)


@register(rule=SECOND_ARG_CHANNELS)
class CSPResNet(nn.Module):
    """One CSPRepResNet stage (PP-YOLOE, arXiv:2203.16250). YAML: ``[c1, c2, n, stride, 'backbone'|'neck',
    act='swish']``. Example: ``[-1, 1, CSPResNet, [64, 128, 2, 2, 'backbone']]``."""

    def __init__(self, c1: int, c2: int, n: int, stride: int, infor: str = "backbone", act: str = "swish"):
        super().__init__()
        if infor not in ("backbone", "neck"):
            raise ValueError(f"CSPResNet's 5th arg must be 'backbone' or 'neck', got {infor!r}")
        self.backbone = CSPResStage(c1, c2, n, stride, infor, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)


@register(rule=SECOND_ARG_CHANNELS)
class ResSPP(nn.Module):
    """PP-YOLOE's SPP with residual blocks: 1x1, ``n`` basic blocks around an SPP (5, 9, 13) + 1x1 (``n`` in
    1..4 picks how many sit before and after it; all four are built, as in YOLOAir). YAML: ``[c1, c2, n=3,
    act='swish']``; ``c2 = 1024`` means 512 hidden channels. Example: ``[4, 1, ResSPP, [512, 192, 1]]``."""

    def __init__(self, c1: int = 1024, c2: int = 384, n: int = 3, act: str = "swish", k=(5, 9, 13)):
        super().__init__()
        if n not in (1, 2, 3, 4):
            raise ValueError(f"ResSPP's n must be 1..4, got {n!r}")
        c_ = c2 // 2 if c2 == 1024 else c2
        self.conv1 = ConvBNLayer(c1, c_, 1, act=act)
        for i in range(1, 5):
            setattr(self, f"basicBlock_spp{i}", BasicBlock(c_, shortcut=False))
        self.spp = nn.ModuleList(nn.MaxPool2d(x, 1, x // 2) for x in k)
        self.conv2 = ConvBNLayer(4 * c_, c_, 1, act=act)
        self.n = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        before, after = {1: (1, 0), 2: (1, 1), 3: (2, 1), 4: (2, 2)}[self.n]
        y = self.conv1(x)
        for i in range(1, before + 1):
            y = getattr(self, f"basicBlock_spp{i}")(y)
        y = self.conv2(torch.cat([y] + [m(y) for m in self.spp], 1))
        for i in range(before + 1, before + after + 1):
            y = getattr(self, f"basicBlock_spp{i}")(y)
        return y
