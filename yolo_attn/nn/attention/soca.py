"""Second-order channel attention (Dai, Cai, Zhang, Xia, Zhang, SAN, CVPR 2019)."""

from __future__ import annotations

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

MAX_COVARIANCE_SIZE = 1000  # the official code pools over at most a central 1000 x 1000 window


def covariance_pool(x: torch.Tensor) -> torch.Tensor:
    """(b, c, h, w) -> (b, c, c) sample covariance over positions (iSQRT-COV's ``X I_hat X^T``)."""
    flat = x.flatten(2)
    centered = flat - flat.mean(-1, keepdim=True)
    return centered @ centered.transpose(1, 2) / flat.shape[-1]


def newton_schulz_sqrtm(a: torch.Tensor, iterations: int = 5) -> torch.Tensor:
    """Matrix square root of SPD ``a`` (b, n, n): trace pre-normalisation, ``iterations`` (>= 2) coupled
    Newton-Schulz steps and trace post-compensation, as iSQRT-COV / SAN's ``Sqrtm`` (forward pass);
    the zero matrix gives 0."""
    n = a.shape[-1]
    eye3 = 3.0 * torch.eye(n, dtype=a.dtype, device=a.device).expand_as(a)
    # a zero matrix (a constant feature map, e.g. the builder's all-zero stride probe) has trace 0:
    # clamped, its root is 0 instead of 0/0 = NaN (which would poison BatchNorm statistics downstream)
    trace = a.diagonal(dim1=-2, dim2=-1).sum(-1)[:, None, None].clamp_min(torch.finfo(a.dtype).tiny)
    a_norm = a / trace
    zy = 0.5 * (eye3 - a_norm)
    y, z = a_norm @ zy, zy
    for _ in range(iterations - 2):
        zy = 0.5 * (eye3 - z @ y)
        y, z = y @ zy, zy @ z
    return 0.5 * y @ (eye3 - z @ y) * trace.sqrt()


@register("SecondOrderChannelAttention", rule=Keywords(WIDTH_THEN_ARGS, ("channels", "reduction"), reduction_as_ratio))
class SOCA(nn.Module):
    """Second-order channel attention (Dai, Cai, Zhang, Xia, Zhang, "Second-order Attention Network for Single
    Image Super-Resolution", CVPR 2019; official code daitao/SAN). No arXiv preprint; CVPR 2019 pp. 11065-11074.

    Global covariance pooling, matrix square root by 5 Newton-Schulz iterations, column means as the
    channel descriptor, then a 1x1-conv MLP (hidden width ``channels * rd_ratio``, ``act_layer`` between) and a
    ``gate_layer`` gate (sigmoid).

    YAML ``[c2, reduction=8]`` -> ``SOCA(c1, rd_ratio=1/reduction)`` (``c2`` = input channels after width gain),
    e.g. ``[-1, 1, SOCA, [1024]]``.
    """

    yaml_example: ClassVar[str] = "[-1, 1, SOCA, [256, 8]]"

    def __init__(
        self, channels: int, rd_ratio: float = 1 / 8, rd_channels: int | None = None, rd_divisor: int = 1,
        act_layer: LayerFactory = nn.ReLU, gate_layer: LayerFactory = nn.Sigmoid,
    ):
        super().__init__()
        hidden = hidden_channels(channels, rd_ratio, rd_channels, rd_divisor)
        self.conv_du = pointwise_mlp(channels, hidden, act_layer)
        self.gate = Gate("channel", gate_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        top, left = max(h - MAX_COVARIANCE_SIZE, 0) // 2, max(w - MAX_COVARIANCE_SIZE, 0) // 2
        window = x[..., top : top + MAX_COVARIANCE_SIZE, left : left + MAX_COVARIANCE_SIZE]
        # covariance and square root in float32 even under autocast/half: the iteration is precision-sensitive
        descriptor = newton_schulz_sqrtm(covariance_pool(window.float())).mean(1).to(x.dtype)  # (b, c)
        return x * self.gate(self.conv_du(descriptor[..., None, None]))
