"""Coordinate Attention (Hou, Zhou, Feng, CVPR 2021)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from yolo_attn.nn.attention._common import LayerFactory, hidden_channels, reduction_as_ratio
from yolo_attn.nn.attention._gates import Gate
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import Keywords, SameWidth

MIN_HIDDEN = 8  # the official ``mip = max(8, inp // reduction)``

CA_RULE = Keywords(SameWidth(signature="[c2, *args]"), ("channels", None, "reduction"), reduction_as_ratio)


@register("CoordAtt", "CoordAttention", rule=CA_RULE)
class CA(nn.Module):
    """Coordinate Attention (Hou, Zhou, Feng, "Coordinate Attention for Efficient Mobile Network Design",
    CVPR 2021, arXiv:2103.02907; official code houqb/CoordAttention).

    Pools along H and along W separately, encodes both with a shared 1x1 conv + BN + ``act_layer`` (h-swish;
    ``channels * rd_ratio`` channels, at least 8), then two 1x1 convs give direction-aware ``gate_layer`` gates
    (sigmoid) ``a_h`` (per row) and ``a_w`` (per column): ``y = x * a_h * a_w``.

    YAML ``[c2, reduction=32]`` -> ``CA(c1, rd_ratio=1/reduction)`` (YOLOAir registers CA like Conv; ``c2``
    must equal ``c1``), e.g. ``[-1, 1, CA, [1024]]``.
    """

    yaml_example: ClassVar[str] = "[-1, 1, CA, [256, 32]]"

    def __init__(
        self, channels: int, rd_ratio: float = 1 / 32, rd_channels: int | None = None, rd_divisor: int = 1,
        act_layer: LayerFactory = nn.Hardswish, gate_layer: LayerFactory = nn.Sigmoid,
    ):
        super().__init__()
        mip = hidden_channels(channels, rd_ratio, rd_channels, rd_divisor, min_channels=MIN_HIDDEN)
        self.conv1 = nn.Conv2d(channels, mip, 1)
        self.bn1 = nn.BatchNorm2d(mip)
        self.act = act_layer()
        self.conv_h = nn.Conv2d(mip, channels, 1)
        self.conv_w = nn.Conv2d(mip, channels, 1)
        self.gate_h = Gate("spatial", gate_layer)
        self.gate_w = Gate("spatial", gate_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pooled_h = x.mean(3, keepdim=True)  # (b, c, h, 1)
        pooled_w = x.mean(2, keepdim=True).transpose(2, 3)  # (b, c, w, 1)
        y = self.act(self.bn1(self.conv1(torch.cat((pooled_h, pooled_w), 2))))
        y_h, y_w = y.split((h, w), 2)
        return x * self.gate_h(self.conv_h(y_h)) * self.gate_w(self.conv_w(y_w.transpose(2, 3)))
