"""CloFormer: Fan, Huang, Chen, He, "Rethinking Local Perception in Lightweight Vision Transformer",
arXiv 2303.17803 (2023); official code qhfan/CloFormer (``EfficientAttention``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from yolo_attn.nn.attention._common import LayerFactory, pointwise_mlp
from yolo_attn.nn.attention._gates import Gate
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import Keywords, PrependInput


class AttnMap(nn.Module):
    """The gated non-linearity that turns ``q * k`` into context-aware weights: 1x1 conv, Swish, 1x1 conv."""

    def __init__(self, dim: int, act_layer: LayerFactory = nn.SiLU):
        super().__init__()
        self.act_block = pointwise_mlp(dim, dim, act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act_block(x)


CLO_SIGNATURE = "[num_heads=8, group_split=[4, 4], kernel_sizes=[5], window_size=4, qkv_bias=True]"


CLO_RULE = Keywords(
    PrependInput(signature=CLO_SIGNATURE),
    ("channels", "num_heads", "group_split", "kernel_sizes", "window_size", "qkv_bias"),
)


@register(rule=CLO_RULE)
class CloAttention(nn.Module):
    """The attention of CloFormer's Clo block (Fan et al., 2023, arXiv 2303.17803).
    YAML: ``[num_heads=8, group_split=[4, 4], kernel_sizes=[5], window_size=4, qkv_bias=True]``.

    Heads are split into groups: group ``i < len(kernel_sizes)`` is a local AttnConv branch (1x1
    conv to q, k, v; a shared-weight depth-wise ``kernel_sizes[i]`` conv over them; context-aware
    weights ``gate(AttnMap(q * k) / sqrt(d))`` multiply v, with ``gate_layer`` tanh and ``act_layer`` the
    AttnMap's Swish); the last group is a global branch
    (multi-head softmax attention whose K/V come from ``window_size`` average-pooled features). The
    branch outputs are concatenated and projected by a 1x1 conv; channels are kept. Names follow the
    official code. Pooling uses ceil mode so that sizes not divisible by ``window_size`` work (the
    official code requires divisible sizes; for those the result is identical).
    Example: ``[-1, 1, CloAttention, [8, [4, 4], [5], 4]]``; a group of 0 heads drops its branch.
    """

    yaml_example: ClassVar[str] = "[-1, 1, CloAttention, [8, [4, 4], [5], 4]]"

    def __init__(
        self,
        channels: int,
        act_layer: LayerFactory = nn.SiLU,
        gate_layer: LayerFactory = nn.Tanh,
        *,
        num_heads: int = 8,
        group_split: Sequence[int] = (4, 4),
        kernel_sizes: Sequence[int] = (5,),
        window_size: int = 4,
        qkv_bias: bool = True,
    ):
        super().__init__()
        if sum(group_split) != num_heads or len(kernel_sizes) + 1 != len(group_split):
            raise ValueError(
                f"group_split {list(group_split)} must sum to num_heads={num_heads} and have one entry per "
                f"kernel size {list(kernel_sizes)} plus one for the global branch"
            )
        if channels % num_heads:
            raise ValueError(f"channels {channels} must be divisible by num_heads={num_heads}")
        self.dim_head = channels // num_heads
        self.scale = self.dim_head**-0.5
        self.group_split = list(group_split)
        qkvs, convs, act_blocks = [], [], []
        for kernel_size, heads in zip(kernel_sizes, group_split[:-1], strict=True):
            if heads == 0:
                continue
            width = heads * self.dim_head
            qkvs.append(nn.Conv2d(channels, 3 * width, 1, bias=qkv_bias))
            convs.append(nn.Conv2d(3 * width, 3 * width, kernel_size, 1, kernel_size // 2, groups=3 * width))
            act_blocks.append(AttnMap(width, act_layer))
        self.qkvs, self.convs, self.act_blocks = nn.ModuleList(qkvs), nn.ModuleList(convs), nn.ModuleList(act_blocks)
        self.global_heads = group_split[-1]
        if self.global_heads:
            self.global_q = nn.Conv2d(channels, self.global_heads * self.dim_head, 1, bias=qkv_bias)
            self.global_kv = nn.Conv2d(channels, 2 * self.global_heads * self.dim_head, 1, bias=qkv_bias)
            self.avgpool = nn.AvgPool2d(window_size, ceil_mode=True) if window_size != 1 else nn.Identity()
        self.gate = Gate("spatial", gate_layer)  # shared by the local branches (it holds no parameters)
        self.proj = nn.Conv2d(channels, channels, 1, bias=qkv_bias)

    def local_attention(self, x: torch.Tensor, to_qkv: nn.Module, mixer: nn.Module, attn_map: nn.Module
                        ) -> torch.Tensor:
        """AttnConv: shared depth-wise weights on q, k, v, then context-aware weights on v."""
        q, k, v = mixer(to_qkv(x)).chunk(3, dim=1)
        return self.gate(attn_map(q * k) * self.scale) * v

    def global_attention(self, x: torch.Tensor) -> torch.Tensor:
        """Multi-head attention of every position over the pooled K/V."""
        b, _, h, w = x.shape
        q = self.global_q(x).view(b, self.global_heads, self.dim_head, h * w).transpose(-1, -2)  # (b, m, hw, d)
        kv = self.global_kv(self.avgpool(x)).view(b, 2, self.global_heads, self.dim_head, -1)
        k, v = kv.transpose(-1, -2).unbind(1)  # (b, m, n, d) each
        attn = (q @ k.transpose(-1, -2) * self.scale).softmax(dim=-1)  # (b, m, hw, n)
        return (attn @ v).transpose(-1, -2).reshape(b, -1, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [
            self.local_attention(x, to_qkv, mixer, attn_map)
            for to_qkv, mixer, attn_map in zip(self.qkvs, self.convs, self.act_blocks, strict=True)
        ]
        if self.global_heads:
            branches.append(self.global_attention(x))
        return self.proj(torch.cat(branches, dim=1))


__all__ = ["CloAttention", "AttnMap"]
