"""Axial attention image transformer (Ho, Kalchbrenner, Weissenborn, Salimans, 2019)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from yolo_attn.nn.attention._common import LayerFactory, require_divisible
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import Keywords, LiteralChannels


class AxisSelfAttention(nn.Module):
    """Pre-LayerNorm multi-head self-attention along one spatial axis of a (b, c, h, w) map."""

    def __init__(self, c: int, heads: int, axis: int):
        super().__init__()
        self.heads, self.axis = heads, axis
        self.norm = nn.LayerNorm(c)
        self.to_q = nn.Linear(c, c, bias=False)
        self.to_kv = nn.Linear(c, 2 * c, bias=False)
        self.to_out = nn.Linear(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # sequences run along ``axis`` (2 = H, 3 = W); the other spatial axis joins the batch
        other = 5 - self.axis
        seq = x.permute(0, other, self.axis, 1)  # (b, other, length, c)
        b, n, length, c = seq.shape
        seq = self.norm(seq.reshape(b * n, length, c))
        projections = (self.to_q(seq), *self.to_kv(seq).chunk(2, -1))
        q, k, v = (t.view(b * n, length, self.heads, -1).transpose(1, 2) for t in projections)
        out = nn.functional.scaled_dot_product_attention(q, k, v)
        out = self.to_out(out.transpose(1, 2).reshape(b * n, length, c)).view(b, n, length, c)
        return out.permute(0, 3, 2, 1) if self.axis == 2 else out.permute(0, 3, 1, 2)


class ChanLayerNorm(nn.Module):
    """LayerNorm over channels of a (b, c, h, w) map: ``(x - mean) / (std + eps) * g + b`` (lucidrains' form)."""

    def __init__(self, c: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.g = nn.Parameter(torch.ones(1, c, 1, 1))
        self.b = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var, mean = torch.var_mean(x, dim=1, unbiased=False, keepdim=True)
        return (x - mean) / (var.sqrt() + self.eps) * self.g + self.b


def _feed_forward(c: int, act_layer: LayerFactory) -> nn.Sequential:
    """The image transformer's feed-forward: channel LayerNorm, 3x3 conv to 4c, ``act_layer``, 3x3 conv back."""
    return nn.Sequential(
        ChanLayerNorm(c), nn.Conv2d(c, 4 * c, 3, padding=1), act_layer(), nn.Conv2d(4 * c, c, 3, padding=1)
    )


AXIAL_RULE = Keywords(LiteralChannels((0,)), ("channels", "depth", "reversible", "heads"))


@register("AxialImageTransformer", rule=AXIAL_RULE)
class AxialAttention(nn.Module):
    """Axial-attention image transformer (Ho, Kalchbrenner, Weissenborn, Salimans, "Axial Attention in
    Multidimensional Transformers", arXiv:1912.12180, 2019; layout of lucidrains/axial-attention's
    ``AxialImageTransformer``, which YOLOAir uses).

    Each of ``depth`` layers adds, as residuals: attention along H, attention along W (pre-LayerNorm,
    ``heads`` heads, scaled dot product), then two convolutional feed-forwards (``act_layer``: LeakyReLU).
    Works at any size.

    YAML ``[c1, depth=1, reversible=False, heads=8]`` -> ``AxialAttention(c1, depth=..., reversible=..., heads=...)``
    (args as written, as in YOLOAir), e.g. ``[-1, 1, AxialImageTransformer, [512, 2, False]]``.
    Reversible residuals are not implemented and are rejected at build time.
    """

    yaml_example: ClassVar[str] = "[-1, 1, AxialAttention, [256, 1]]"

    def __init__(
        self,
        channels: int,
        act_layer: LayerFactory = nn.LeakyReLU,
        *,
        depth: int = 1,
        reversible: bool = False,
        heads: int = 8,
    ):
        super().__init__()
        if reversible:
            raise ValueError("reversible residual layers are not implemented; use reversible=False")
        require_divisible(channels, heads, "heads")
        self.layers = nn.ModuleList(
            nn.ModuleList(
                (
                    AxisSelfAttention(channels, heads, 2),
                    AxisSelfAttention(channels, heads, 3),
                    _feed_forward(channels, act_layer),
                    _feed_forward(channels, act_layer),
                )
            )
            for _ in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            for residual in layer.children():
                x = x + residual(x)
        return x
