"""GAM: Liu et al., "Global Attention Mechanism: Retain Information to Enhance Channel-Spatial
Interactions", arXiv 2112.05561 (2021)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from yolo_attn.nn.attention._common import LayerFactory, hidden_channels, pointwise_mlp
from yolo_attn.nn.attention._gates import Gate
from yolo_attn.nn.blocks.yoloair_shuffle import channel_shuffle
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import Keywords, SameWidth

SHUFFLE_GROUPS = 4  # "YOLOv7改进:GAMAttention注意力机制" and YOLOAir shuffle with 4 groups whatever ``rate`` is


def gam_arguments(named: dict[str, Any]) -> dict[str, Any]:
    """YAML ``[c2, group=True, rate=4]``: ``rate`` is both the reduction (``rd_ratio`` 1/rate) and, with
    ``group``, the spatial convolutions' group count."""
    named = dict(named)
    group, rate = named.pop("group", True), named.pop("rate", None)
    if rate is not None:
        named["rd_ratio"] = 1 / rate
    if not group or rate is not None:
        named["groups"] = rate if group else 1
    return named


GAM_RULE = Keywords(
    SameWidth(signature="[c2=c1, group=True, rate=4]"), ("channels", None, "group", "rate"), gam_arguments
)


@register(rule=GAM_RULE)
class GAMAttention(nn.Module):
    """Global Attention Mechanism (Liu, Shao, Hoffmann, 2021, arXiv 2112.05561). YAML: ``[c2=c1, group=True, rate=4]``.

    As the post "YOLOv7改进:GAMAttention注意力机制" (YOLOv7 improved: the GAMAttention attention mechanism) and
    YOLOAir implement it: a channel MLP (``c -> c * rd_ratio -> c``, ``act_layer`` between) on the
    permuted ``(b, h*w, c)`` tensor multiplies the features as it is (no sigmoid on this branch, unlike the
    paper's figure: its gate is an identity); the spatial branch is two ``kernel_size`` convs (``groups``
    groups) with BatchNorm and ``act_layer`` between, BatchNorm, a final channel shuffle (4 groups) and the
    ``gate_layer`` gate (sigmoid) before multiplying. The YAML's ``rate`` sets ``rd_ratio=1/rate`` and, with
    ``group``, ``groups=rate``. Example: ``[-3, 1, GAMAttention, [128]]`` (``c2`` width-scaled, must equal
    the input channels).
    """

    yaml_example: ClassVar[str] = "[-1, 1, GAMAttention, [256]]"

    def __init__(
        self, channels: int, rd_ratio: float = 1 / 4, rd_channels: int | None = None, rd_divisor: int = 1,
        kernel_size: int = 7, act_layer: LayerFactory = nn.ReLU, gate_layer: LayerFactory = nn.Sigmoid, *,
        groups: int = 4,
    ):
        super().__init__()
        hidden = hidden_channels(channels, rd_ratio, rd_channels, rd_divisor)
        padding = kernel_size // 2
        self.channel_attention = pointwise_mlp(channels, hidden, act_layer, conv=False)
        self.spatial_attention = nn.Sequential(
            nn.Conv2d(channels, hidden, kernel_size, padding=padding, groups=groups),
            nn.BatchNorm2d(hidden),
            act_layer(),
            nn.Conv2d(hidden, channels, kernel_size, padding=padding, groups=groups),
            nn.BatchNorm2d(channels),
        )
        self.channel_gate = Gate("channel", nn.Identity)
        self.spatial_gate = Gate("spatial", gate_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.channel_gate(self.channel_attention(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))
        return x * self.spatial_gate(channel_shuffle(self.spatial_attention(x), SHUFFLE_GROUPS))


__all__ = ["GAMAttention"]
