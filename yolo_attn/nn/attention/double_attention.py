"""A2-Nets: Chen, Kalantidis, Li, Yan, Feng, "A^2-Nets: Double Attention Networks", NeurIPS 2018
(arXiv 1810.11579)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import CONV, Keywords, LayerContext, Resolved, YamlRule


@dataclass(frozen=True)
class DoubleAttentionRule(YamlRule):
    """The post "YOLOv5改进 | 注意力机制 | 添加双重注意力机制 DoubleAttention【附代码/涨点能手】" (YOLOv5
    improved | attention | adding the DoubleAttention dual attention mechanism, with code) registers the block
    like ``Conv``: ``[c_m, c_n, reconstruct=False]`` -> ``(c1, width-scaled c_m, c_n, reconstruct)``; output
    channels are ``c_m``, or ``c1`` with ``reconstruct``."""

    signature: str = "[c_m, c_n, reconstruct=False]"

    def resolve(self, args: list[Any], ctx: LayerContext) -> Resolved:
        resolved = CONV.resolve(args, ctx)
        reconstruct = len(resolved.args) > 3 and bool(resolved.args[3])
        return Resolved(resolved.args, ctx.c_in[0] if reconstruct else resolved.c_out, resolved.number)

    def args_for_channels(self, args: list[Any], channels: int, width_multiple: float = 1.0) -> list[Any]:
        """With ``reconstruct`` any ``c_m`` keeps the channels; without it ``c_m`` must be the input's."""
        reconstruct = len(args) > 2 and bool(args[2])
        return list(args) if reconstruct else [round(channels / width_multiple), *args[1:]]


@register("DoubleAttention", rule=Keywords(DoubleAttentionRule(), ("channels", "c_m", "c_n", "reconstruct")))
class DoubleAttentionLayer(nn.Module):
    """Double attention block (Chen et al., A2-Nets, NeurIPS 2018, arXiv 1810.11579).
    YAML: ``[c_m, c_n, reconstruct=False]``.

    ``A = conv_A(x)`` (c_m maps), ``B = conv_B(x)``, ``V = conv_V(x)`` (c_n maps each, 1x1 convs).
    Gather: ``G = A @ softmax(B over positions)^T`` -> (b, c_m, c_n) global descriptors. Distribute:
    ``Z = G @ softmax(V over the c_n descriptors)`` -> (b, c_m, h, w); ``reconstruct`` maps Z back to
    ``channels`` with a 1x1 conv. As in the post "YOLOv5改进 | 注意力机制 | 添加双重注意力机制 DoubleAttention"
    (YOLOv5 improved | attention | adding DoubleAttention) there is no residual. Example (that post's YOLOv5l):
    ``[-1, 1, DoubleAttentionLayer, [128, 3]]`` -> ``DoubleAttentionLayer(128, c_m=128, c_n=3)``.
    """

    yaml_example: ClassVar[str] = "[-1, 1, DoubleAttention, [128, 64, True]]"

    def __init__(self, channels: int, *, c_m: int, c_n: int, reconstruct: bool = False):
        super().__init__()
        self.in_channels, self.c_m, self.c_n, self.reconstruct = channels, c_m, c_n, reconstruct
        self.convA = nn.Conv2d(channels, c_m, 1)
        self.convB = nn.Conv2d(channels, c_n, 1)
        self.convV = nn.Conv2d(channels, c_n, 1)
        if reconstruct:
            self.conv_reconstruct = nn.Conv2d(c_m, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        features = self.convA(x).flatten(2)  # (b, c_m, hw)
        gather_maps = F.softmax(self.convB(x).flatten(2), dim=-1)  # (b, c_n, hw), over positions
        distribute_maps = F.softmax(self.convV(x).flatten(2), dim=1)  # (b, c_n, hw), over descriptors
        descriptors = features @ gather_maps.transpose(1, 2)  # (b, c_m, c_n)
        z = (descriptors @ distribute_maps).view(b, self.c_m, h, w)
        return self.conv_reconstruct(z) if self.reconstruct else z


__all__ = ["DoubleAttentionLayer", "DoubleAttentionRule"]
