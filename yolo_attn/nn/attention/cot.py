"""Contextual Transformer attention (Li, Yao, Pan, Mei, CoTNet, TPAMI 2022)."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from yolo_attn.nn.attention._common import LayerFactory, hidden_channels, pointwise_mlp, require_divisible
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import PREPEND_INPUT, Keywords

SHARE_PLANES = 8  # channels c, c + C/8, c + 2C/8, ... share one local aggregation kernel (official CoTNet)
EMBED_FACTOR = 2
RADIX = 2
SE_REDUCTION = 4
MIN_ATTENTION_CHANNELS = 32  # the official ``attn_chs = max(out_channels * radix // reduction_factor, 32)``


def local_aggregate(v: torch.Tensor, weights: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Zero-padded k x k aggregation with a per-position kernel: ``v`` (b, c, h, w), ``weights``
    (b, c_w, k*k, h, w); channel ``i`` uses weight channel ``i % c_w`` (SAN/CoTNet ``aggregation_zeropad``)."""
    b, c, h, w = v.shape
    c_w = weights.shape[1]
    taps = F.unfold(v, kernel_size, padding=kernel_size // 2).view(b, c // c_w, c_w, kernel_size**2, h, w)
    return (taps * weights[:, None]).sum(3).view(b, c, h, w)


@register("CoT", "CotLayer", rule=Keywords(PREPEND_INPUT, ("channels", "kernel_size")))
class CoTAttention(nn.Module):
    """Contextual Transformer block (Li, Yao, Pan, Mei, "Contextual Transformer Networks for Visual Recognition",
    TPAMI 2022, arXiv:2107.12292; official code JDAI-CV/CoTNet ``CotLayer``).

    Static context: keys from a grouped k x k conv (4 groups) + BN + ``act_layer`` (ReLU). Dynamic context:
    from ``[x, keys]`` two 1x1 convs (BN, ``act_layer``, then GroupNorm) predict a k x k kernel per position,
    shared by every 8th channel, that aggregates the 1x1-conv values locally; BN + SiLU (the official code's
    swish). The two contexts are fused by split attention (radix 2) through an MLP of ``channels * rd_ratio``
    hidden channels (radix / 4 by default, at least 32). Its fusion MLP has BatchNorm on the pooled 1x1
    descriptor, as in the official code, so training needs batch >= 2.

    YAML ``[kernel_size=3]`` -> ``CoTAttention(c1, kernel_size=kernel_size)`` (input width prepended; ``c1``
    divisible by 8), e.g. ``[-1, 1, CoTAttention, [3]]``.
    """

    yaml_example: ClassVar[str] = "[-1, 1, CoTAttention, [3]]"

    def __init__(
        self, channels: int, rd_ratio: float = RADIX / SE_REDUCTION, rd_channels: int | None = None,
        rd_divisor: int = 1, kernel_size: int = 3, act_layer: LayerFactory = nn.ReLU,
    ):
        super().__init__()
        require_divisible(channels, SHARE_PLANES, "8 (kernel sharing) and 4 (key groups)")
        self.kernel_size = kernel_size
        self.key_embed = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, groups=4, bias=False),
            nn.BatchNorm2d(channels),
            act_layer(),
        )
        weight_channels = kernel_size**2 * channels // SHARE_PLANES
        self.embed = nn.Sequential(
            nn.Conv2d(2 * channels, channels // EMBED_FACTOR, 1, bias=False),
            nn.BatchNorm2d(channels // EMBED_FACTOR),
            act_layer(),
            nn.Conv2d(channels // EMBED_FACTOR, weight_channels, 1),
            nn.GroupNorm(channels // SHARE_PLANES, weight_channels),
        )
        self.conv1x1 = nn.Sequential(nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels))
        self.bn = nn.BatchNorm2d(channels)
        self.act = nn.SiLU(inplace=True)
        attn_chs = hidden_channels(channels, rd_ratio, rd_channels, rd_divisor, min_channels=MIN_ATTENTION_CHANNELS)
        self.se = pointwise_mlp(channels, attn_chs, act_layer, RADIX * channels, norm_layer=nn.BatchNorm2d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        keys = self.key_embed(x)
        weights = self.embed(torch.cat((x, keys), 1)).view(b, c // SHARE_PLANES, self.kernel_size**2, h, w)
        dynamic = self.act(self.bn(local_aggregate(self.conv1x1(x), weights, self.kernel_size)))
        contexts = torch.stack((dynamic, keys), 2)  # (b, c, radix, h, w)
        gate = self.se(contexts.sum(2).mean((2, 3), keepdim=True)).view(b, c, RADIX).softmax(-1)
        return (contexts * gate[..., None, None]).sum(2)
