"""YOLOAir's spatial-pyramid necks (iscyy/yoloair ``models/common.py``, ``models/Models/yolov4.py``):
CSP-SPP variants, ASPP and RFB.

Module and attribute names follow YOLOAir so that parameter counts and ``state_dict`` keys match.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from yolo_attn.nn.blocks.conv import Conv, default_activation
from yolo_attn.nn.blocks.pooling import SPPF
from yolo_attn.nn.blocks.yolov7 import SPPCSPC
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import CONV, CSP, ChannelFunction, SameWidth


@register(rule=CSP)
class SPPCSP(SPPCSPC):
    """Scaled-YOLOv4's CSP-SPP (Wang, Bochkovskiy, Liao, "Scaled-YOLOv4", CVPR 2021, arXiv:2011.08036): as
    SPPCSPC but the shortcut branch is a plain 1x1 conv and the concatenation gets BN + Mish before ``cv7``.
    YAML: ``[c2, shortcut=False, g=1, e=0.5, k=(5, 9, 13)]``. Example: ``[-1, 1, SPPCSP, [512]]``."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = False, g: int = 1, e: float = 0.5,
                 k=(5, 9, 13)):
        super().__init__(c1, c2, n, shortcut, g, e, k)
        c_ = int(2 * c2 * e)
        self.cv2 = nn.Conv2d(c1, c_, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(2 * c_)
        self.act = nn.Mish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.cv4(self.cv3(self.cv1(x)))
        y1 = self.cv6(self.cv5(torch.cat([x1] + [m(x1) for m in self.m], 1)))
        return self.cv7(self.act(self.bn(torch.cat((y1, self.cv2(x)), 1))))


@register(rule=CONV)
class SPPFCSPC(SPPCSPC):
    """SPPCSPC with SPPF's pooling (one k x k max-pool applied three times in series; YOLOv5's SPPF and
    YOLOv7's SPPCSPC). YAML: ``[c2, n=1, shortcut=False, g=1, e=0.5, k=5]``. Example: ``[-1, 1, SPPFCSPC, [1024]]``."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = False, g: int = 1, e: float = 0.5, k: int = 5):
        super().__init__(c1, c2, n, shortcut, g, e)
        # one pooling, used three times, under SPPCSPC's name for its ModuleList of three (YOLOAir's layout)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)  # type: ignore[assignment]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = [self.cv4(self.cv3(self.cv1(x)))]
        for _ in range(3):
            pooled.append(self.m(pooled[-1]))
        return self.cv7(torch.cat((self.cv6(self.cv5(torch.cat(pooled, 1))), self.cv2(x)), 1))


@register(rule=CONV)
class SPPCSPC_group(SPPCSPC):  # noqa: N801 - YOLOAir's YAML name
    """SPPCSPC (YOLOv7) with every convolution in 4 groups. YAML: ``[c2, n=1, shortcut=False, g=1, e=0.5,
    k=(5, 9, 13)]``. Example: ``[-1, 1, SPPCSPC_group, [1024]]``."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = False, g: int = 1, e: float = 0.5,
                 k=(5, 9, 13)):
        super().__init__(c1, c2, n, shortcut, g, e, k)
        c_ = int(2 * c2 * e)
        shapes = {"cv1": (c1, c_, 1), "cv2": (c1, c_, 1), "cv3": (c_, c_, 3), "cv4": (c_, c_, 1),
                  "cv5": (4 * c_, c_, 1), "cv6": (c_, c_, 3), "cv7": (2 * c_, c2, 1)}
        for name, (a, b, kernel) in shapes.items():
            setattr(self, name, Conv(a, b, kernel, 1, g=4))


@register(rule=CONV)
class ASPP(nn.Module):
    """Atrous spatial pyramid pooling without BN (Chen et al., "Rethinking Atrous Convolution for Semantic
    Image Segmentation", DeepLabv3, arXiv:1706.05587): image pooling, a 1x1 and three 3x3 convs at dilations
    6, 12, 18, concatenated and fused by a 1x1 conv. YAML: ``[c2]``. Example: ``[-1, 1, ASPP, [1024]]``."""

    def __init__(self, c1: int, c2: int):
        super().__init__()
        self.mean = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv2d(c1, c2, 1)
        self.atrous_block1 = nn.Conv2d(c1, c2, 1)
        self.atrous_block6 = nn.Conv2d(c1, c2, 3, padding=6, dilation=6)
        self.atrous_block12 = nn.Conv2d(c1, c2, 3, padding=12, dilation=12)
        self.atrous_block18 = nn.Conv2d(c1, c2, 3, padding=18, dilation=18)
        self.conv_1x1_output = nn.Conv2d(5 * c2, c2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.interpolate(self.conv(self.mean(x)), size=x.shape[2:], mode="bilinear", align_corners=False)
        branches = [self.atrous_block1, self.atrous_block6, self.atrous_block12, self.atrous_block18]
        return self.conv_1x1_output(torch.cat([pooled] + [b(x) for b in branches], 1))


class BasicConv(nn.Module):
    """Conv2d (no bias) + BatchNorm2d (eps 1e-5, momentum 0.01) + optional ReLU, as RFBNet writes it."""

    def __init__(self, c1: int, c2: int, k, s: int = 1, p=0, d: int = 1, g: int = 1, relu: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, p, dilation=d, groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=1e-5, momentum=0.01)
        self.relu = nn.ReLU(inplace=True) if relu else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return self.relu(x) if self.relu is not None else x


@register(rule=CONV)
class BasicRFB(nn.Module):
    """Receptive Field Block (Liu, Huang, Wang, "Receptive Field Block Net for Accurate and Fast Object
    Detection", ECCV 2018, arXiv:1711.07767): three branches of growing kernel and dilation, concatenated,
    fused by 1x1, scaled and added to a 1x1 shortcut, then ReLU.
    YAML: ``[c2, stride=1, scale=0.1, map_reduce=8, vision=1, groups=1]``. Example: ``[-1, 1, BasicRFB, [1024]]``."""

    def __init__(self, c1: int, c2: int, stride: int = 1, scale: float = 0.1, map_reduce: int = 8, vision: int = 1,
                 groups: int = 1):
        super().__init__()
        self.scale = scale
        c_ = c1 // map_reduce
        self.branch0 = self.branch(c1, c_, [(2 * c_, 3, stride, 1)], vision + 1, groups)
        self.branch1 = self.branch(c1, c_, [(2 * c_, 3, stride, 1)], vision + 2, groups)
        self.branch2 = self.branch(c1, c_, [((c_ // 2) * 3, 3, 1, 1), (2 * c_, 3, stride, 1)], vision + 4, groups)
        self.ConvLinear = BasicConv(6 * c_, c2, 1, relu=False)
        self.shortcut = BasicConv(c1, c2, 1, stride, relu=False)
        self.relu = nn.ReLU(inplace=False)

    @staticmethod
    def branch(c1: int, c_: int, middle: list[tuple[int, int, int, int]], dilation: int, g: int) -> nn.Sequential:
        """1x1 reduce, the ``middle`` (c_out, k, s, p) convs, then a 3x3 conv at ``dilation`` (no ReLU)."""
        layers, c = [BasicConv(c1, c_, 1, g=g, relu=False)], c_
        for c_out, k, s, p in middle:
            layers.append(BasicConv(c, c_out, k, s, p, g=g))
            c = c_out
        layers.append(BasicConv(c, 2 * c_, 3, 1, dilation, d=dilation, g=g, relu=False))
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ConvLinear(torch.cat((self.branch0(x), self.branch1(x), self.branch2(x)), 1))
        return self.relu(y * self.scale + self.shortcut(x))


@register(rule=SameWidth(pass_width=False))
class SimSPPF(SPPF):
    """YOLOv6's simplified SPPF (Li et al., "YOLOv6", arXiv:2209.02976): SPPF with ReLU activations, keeping
    the input width. YAML: ``[c2=c1, k=5]``. Example: ``[-1, 1, SimSPPF, [1024]]``."""

    def __init__(self, c1: int, k: int = 5):
        with default_activation(nn.ReLU()):
            super().__init__(c1, c1, k)


@register(rule=CONV)
class CARAFE(nn.Module):
    """Content-aware reassembly of features (Wang et al., "CARAFE: Content-Aware ReAssembly of FEatures",
    ICCV 2019, arXiv:1905.02188): a 1x1 channel compressor and a k x k encoder predict a softmax-normalised
    k x k kernel for every upsampled position, which reassembles the input's k x k neighbourhood; a 1x1 conv
    sets the width. YAML: ``[c2, kernel_size=3, up_factor=2]``. Example: ``[-1, 1, CARAFE, [512, 3, 2]]``."""

    def __init__(self, c1: int, c2: int, kernel_size: int = 3, up_factor: int = 2):
        super().__init__()
        self.kernel_size, self.up_factor = kernel_size, up_factor
        self.down = nn.Conv2d(c1, c1 // 4, 1)
        self.encoder = nn.Conv2d(c1 // 4, up_factor**2 * kernel_size**2, kernel_size, 1, kernel_size // 2)
        self.out = nn.Conv2d(c1, c2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        k, s = self.kernel_size, self.up_factor
        kernels = F.softmax(F.pixel_shuffle(self.encoder(self.down(x)), s), dim=1)  # (n, k*k, s*h, s*w)
        patches = F.unfold(x, k, padding=k // 2).view(n, c * k * k, h, w)
        patches = F.interpolate(patches, scale_factor=s, mode="nearest").view(n, c, k * k, s * h, s * w)
        return self.out((patches * kernels[:, None]).sum(2))


@register(rule=ChannelFunction(lambda c_in, args: max(c_in), "[c1, c2] (as written; 2 or 3 inputs)"))
class Concat_bifpn(nn.Module):  # noqa: N801 - YOLOAir's YAML name
    """BiFPN's fast normalised fusion (Tan, Pang, Le, "EfficientDet", CVPR 2020, arXiv:1911.09070) as YOLOAir
    writes it: learned non-negative weights over 2 or 3 equal-shaped inputs, weighted sum, ReLU, 1x1 Conv.
    YAML: ``[c1, c2]`` as written. Example: ``[[-1, 6], 1, Concat_bifpn, [256, 256]]``."""

    def __init__(self, c1: int, c2: int):
        super().__init__()
        self.w1_weight = nn.Parameter(torch.ones(2))
        self.w2_weight = nn.Parameter(torch.ones(3))
        self.epsilon = 1e-4
        self.conv = Conv(c1, c2, 1, 1, 0)
        self.act = nn.ReLU()

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        if len(x) not in (2, 3):
            raise ValueError(f"Concat_bifpn fuses 2 or 3 inputs, got {len(x)}")
        w: torch.Tensor = self.w1_weight if len(x) == 2 else self.w2_weight
        w = w / (w.sum() + self.epsilon)
        return self.conv(self.act(sum(wi * xi for wi, xi in zip(w, x, strict=True))))
