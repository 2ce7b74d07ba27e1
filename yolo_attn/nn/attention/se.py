"""Squeeze-and-Excitation (Hu, Shen, Sun, CVPR 2018): the zoo's one SE implementation, also the SE inside YOLOAir's
MobileNetV3, PP-LCNet and ESNet blocks (each port's ``state_dict`` names kept through an :class:`SELayout`)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from yolo_attn.nn.attention._common import (
    WIDTH_THEN_ARGS,
    LayerFactory,
    hidden_channels,
    pointwise_mlp,
    reduction_as_ratio,
)
from yolo_attn.nn.attention._gates import Gate
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import Keywords


@dataclass(frozen=True)
class SELayout:
    """Where a port of SE keeps its two projections, so that the port's checkpoints load by key: ``reduce`` and
    ``expand`` inside the ``nn.Sequential`` ``container`` (``None``: directly on the block), 1x1 convolutions
    (``conv``) or ``nn.Linear`` layers on the pooled vector."""

    container: str | None
    reduce: str
    expand: str
    conv: bool


LINEAR_FC = SELayout("fc", "0", "2", conv=False)  # Hu et al.'s code, YOLOAir's SEAttention and MobileNetV3 SELayer
CONV_PAIR = SELayout(None, "conv1", "conv2", conv=True)  # YOLOAir's PP-LCNet / ESNet SqueezeExcite
EXCITATION = SELayout("Excitation", "FC1", "FC2", conv=True)  # YOLOAir's SeBlock (MobileNetV3-Small, PP-LCNet)


@register("SEAttention", "SELayer", rule=Keywords(WIDTH_THEN_ARGS, ("channels", "reduction"), reduction_as_ratio))
class SE(nn.Module):
    """Squeeze-and-Excitation (Hu, Shen, Sun, "Squeeze-and-Excitation Networks", CVPR 2018, arXiv:1709.01507).

    Global average pool, a two-layer MLP (``act_layer`` between, hidden width from ``rd_ratio``) and a
    ``gate_layer`` gate per channel. The defaults are the paper's and YOLOAir's ``SEAttention`` (bias-free
    ``nn.Linear`` layers under ``fc.0`` / ``fc.2``, reduction 16, sigmoid). ``bias`` and ``layout`` reproduce the
    SE of other ports by key: YOLOAir's MobileNetV3 (biased, hard-sigmoid gate), PP-LCNet and ESNet
    (:data:`CONV_PAIR`) and ``SeBlock`` (:data:`EXCITATION`).

    YAML ``[c2, reduction=16]`` -> ``SE(c1, rd_ratio=1/reduction)`` (YOLOAir's attention convention: ``c2`` is the
    width-scaled channel count and must equal the input's), e.g. ``[-1, 1, SE, [1024, 16]]``.
    """

    yaml_example: ClassVar[str] = "[-1, 1, SE, [256, 16]]"

    def __init__(
        self, channels: int, rd_ratio: float = 1 / 16, rd_channels: int | None = None, rd_divisor: int = 1,
        act_layer: LayerFactory = nn.ReLU, gate_layer: LayerFactory = nn.Sigmoid, *,
        bias: bool = False, layout: SELayout = LINEAR_FC,
    ):
        super().__init__()
        hidden = hidden_channels(channels, rd_ratio, rd_channels, rd_divisor)
        self.layout = layout
        mlp = pointwise_mlp(channels, hidden, act_layer, bias=bias, conv=layout.conv)
        steps = OrderedDict(zip((layout.reduce, "act", layout.expand), mlp, strict=True))
        if layout.container is None:
            for name, module in steps.items():
                self.add_module(name, module)
            self.steps = tuple(steps)
        else:
            self.add_module(layout.container, nn.Sequential(steps))
            self.steps = (layout.container,)
        self.gate = Gate("channel", gate_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.mean((2, 3), keepdim=self.layout.conv)
        for name in self.steps:
            y = getattr(self, name)(y)
        return x * self.gate(y.view(*y.shape[:2], 1, 1))
