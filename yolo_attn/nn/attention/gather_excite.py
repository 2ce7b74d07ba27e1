"""Gather-Excite (Hu, Shen, Albanie, Sun, Vedaldi, NeurIPS 2018)."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from yolo_attn.nn.attention._common import LayerFactory, hidden_channels, pointwise_mlp
from yolo_attn.nn.attention._gates import Gate
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import PREPEND_INPUT, Keywords


def _gather_convs(c: int, extent: int, act_layer: LayerFactory) -> nn.Sequential:
    """GE-theta gather: log2(extent) depthwise 3x3 stride-2 convs with BN, ``act_layer`` between them."""
    layers: list[nn.Module] = []
    steps = int(math.log2(extent))
    for i in range(steps):
        layers += [nn.Conv2d(c, c, 3, 2, 1, groups=c, bias=False), nn.BatchNorm2d(c)]
        if i != steps - 1:
            layers.append(act_layer())
    return nn.Sequential(*layers)


GE_RULE = Keywords(PREPEND_INPUT, ("channels", "extent", "extra_params", "use_mlp", "rd_ratio"))


@register("GE", "GatherExciteBlock", rule=GE_RULE)
class GatherExcite(nn.Module):
    """Gather-Excite (Hu, Shen, Albanie, Sun, Vedaldi, "Gather-Excite: Exploiting Feature Context in
    Convolutional Neural Networks", NeurIPS 2018, arXiv:1810.12348; layout of timm's ``GatherExcite``).

    Gather context over an ``extent`` (0 = global): parameter-free average pooling (GE-theta-minus) or,
    with ``extra_params``, strided depthwise convs + BN (GE-theta). Excite: optional 1x1-conv MLP with
    ``rd_ratio`` reduction and ``act_layer`` (GE-theta-plus style), nearest upsampling to the input size,
    ``gate_layer`` gate (sigmoid). A global gather with ``extra_params`` needs a fixed input size and is
    rejected at build time.

    YAML ``[extent=0, extra_params=False, use_mlp=True, rd_ratio=1/16]`` -> ``GatherExcite(c1, rd_ratio=...,
    extent=..., ...)`` (input width prepended), e.g. ``[-1, 1, GatherExcite, [2, True]]``.
    """

    yaml_example: ClassVar[str] = "[-1, 1, GatherExcite, [2, True]]"

    def __init__(
        self, channels: int, rd_ratio: float = 1 / 16, rd_channels: int | None = None, rd_divisor: int = 1,
        act_layer: LayerFactory = nn.ReLU, gate_layer: LayerFactory = nn.Sigmoid, *,
        extent: int = 0, extra_params: bool = False, use_mlp: bool = True,
    ):
        super().__init__()
        if extent and (extent < 2 or extent & (extent - 1)):
            raise ValueError(f"extent must be 0 (global) or a power of two >= 2, got {extent}")
        if extra_params and not extent:
            raise ValueError("extra_params with a global extent (0) needs a depthwise conv as large as the feature "
                             "map, i.e. a fixed input size; use extent >= 2")
        self.extent = extent
        self.gather = _gather_convs(channels, extent, act_layer) if extra_params else None
        hidden = hidden_channels(channels, rd_ratio, rd_channels, rd_divisor)
        self.mlp = pointwise_mlp(channels, hidden, act_layer) if use_mlp else nn.Identity()
        self.gate = Gate("channel", gate_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gather is not None:
            context = self.gather(x)
        elif self.extent == 0:
            context = x.mean((2, 3), keepdim=True)
        else:
            k = 2 * self.extent - 1
            context = F.avg_pool2d(x, k, self.extent, k // 2, count_include_pad=False)
        context = self.mlp(context)
        if context.shape[-2:] != (1, 1):
            context = F.interpolate(context, size=x.shape[-2:])
        return x * self.gate(context)
