"""ACmix: self-attention and convolution sharing one set of 1x1 projections (Pan et al., CVPR 2022)."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from yolo_attn.nn.attention._common import WIDTH_THEN_ARGS, require_divisible
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import Keywords


def _even_steps(n: int, like: torch.Tensor) -> torch.Tensor:
    """``torch.linspace(-1, 1, n)`` (up to float rounding, ~1e-7) built from ``arange``, so that ONNX
    export keeps ``n`` symbolic (linspace's length is frozen)."""
    return torch.arange(n, dtype=like.dtype, device=like.device) * (2.0 / (n - 1)) - 1.0


def _grid_position(h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """(1, 2, h, w) coordinates in [-1, 1]: x (along w) then y (along h)."""
    loc_w = _even_steps(w, like).expand(h, w)
    loc_h = _even_steps(h, like)[:, None].expand(h, w)
    return torch.stack((loc_w, loc_h))[None]


ACMIX_RULE = Keywords(WIDTH_THEN_ARGS, ("channels", "kernel_att", "head", "kernel_conv", "stride", "dilation"))


@register("ACMix", rule=ACMIX_RULE)
class ACmix(nn.Module):
    """ACmix (Pan, Ge, Lu, Song, Chen, Huang, Huang, "On the Integration of Self-Attention and Convolution",
    CVPR 2022, arXiv:2111.14556; official code LeapLabTHU/ACmix).

    Shared 1x1 projections q, k, v feed two paths: local self-attention over ``kernel_att`` x
    ``kernel_att`` windows (``head`` heads, relative position from a 1x1 conv of pixel coordinates,
    reflection padding), and a convolution path that mixes the 3 * ``head`` feature maps with a 1x1
    conv into ``kernel_conv**2`` shifted copies aggregated by a grouped conv initialised as shifts.
    ``y = rate1 * attention + rate2 * convolution`` (both 0.5 at start). Feature maps must be larger
    than ``(kernel_att - 1) * dilation / 2`` on each side (reflection padding). Parameters, keys and
    outputs (stride 1) equal YOLOAir's ``ACmix``, whose ``dep_conv`` bias its initialisation removes.

    YAML ``[c2, kernel_att=7, head=4, kernel_conv=3, stride=1, dilation=1]`` -> ``ACmix(c1, kernel_att=..., ...)``
    (``c2`` = input channels after width gain), e.g. ``[-1, 1, ACmix, [1024]]``.
    """

    yaml_example: ClassVar[str] = "[-1, 1, ACmix, [256]]"

    def __init__(
        self,
        channels: int,
        *,
        kernel_att: int = 7,
        head: int = 4,
        kernel_conv: int = 3,
        stride: int = 1,
        dilation: int = 1,
    ):
        super().__init__()
        require_divisible(channels, head, "head")
        self.head, self.head_dim = head, channels // head
        self.kernel_att, self.kernel_conv, self.stride, self.dilation = kernel_att, kernel_conv, stride, dilation
        self.padding_att = (dilation * (kernel_att - 1) + 1) // 2
        self.conv1 = nn.Conv2d(channels, channels, 1)
        self.conv2 = nn.Conv2d(channels, channels, 1)
        self.conv3 = nn.Conv2d(channels, channels, 1)
        self.conv_p = nn.Conv2d(2, self.head_dim, 1)
        self.fc = nn.Conv2d(3 * head, kernel_conv**2, 1, bias=False)
        self.dep_conv = nn.Conv2d(
            kernel_conv**2 * self.head_dim, channels, kernel_conv, stride, kernel_conv // 2,
            groups=self.head_dim, bias=False,
        )
        self.rate1 = nn.Parameter(torch.full((1,), 0.5))
        self.rate2 = nn.Parameter(torch.full((1,), 0.5))
        with torch.no_grad():  # the official "shift" initialisation: output j of each group copies tap j
            shifts = torch.zeros(kernel_conv**2, kernel_conv, kernel_conv)
            shifts.view(kernel_conv**2, -1).fill_diagonal_(1.0)
            self.dep_conv.weight.copy_(shifts.repeat(channels, 1, 1, 1))

    def _unfold(self, x: torch.Tensor) -> torch.Tensor:
        """(n, d, h, w) -> (n, d, kernel_att**2, h_out, w_out) windows with reflection padding."""
        n, d, h, w = x.shape
        padded = F.pad(x, [self.padding_att] * 4, mode="reflect")
        cols = F.unfold(padded, self.kernel_att, dilation=self.dilation, stride=self.stride)
        # ceil(h / stride) in integer arithmetic: traced, so ONNX export keeps the size symbolic
        return cols.view(n, d, self.kernel_att**2, (h - 1) // self.stride + 1, (w - 1) // self.stride + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        if min(h, w) <= self.padding_att:
            raise ValueError(f"ACmix needs feature maps larger than {self.padding_att} pixels per side, got {h}x{w}")
        q, k, v = self.conv1(x), self.conv2(x), self.conv3(x)
        pe = self.conv_p(_grid_position(h, w, x))  # (1, head_dim, h, w)
        q_heads, k_heads, v_heads = (t.view(b * self.head, self.head_dim, h, w) for t in (q, k, v))
        q_att = (q_heads * self.head_dim**-0.5)[..., :: self.stride, :: self.stride]
        q_pe = pe[..., :: self.stride, :: self.stride]
        logits = (q_att[:, :, None] * (self._unfold(k_heads) + q_pe[:, :, None] - self._unfold(pe))).sum(1)
        attention = logits.softmax(1)  # over the window taps
        out_att = (attention[:, None] * self._unfold(v_heads)).sum(2)
        out_att = out_att.view(b, c, *out_att.shape[-2:])

        qkv = torch.cat([t.view(b, self.head, self.head_dim, h * w) for t in (q, k, v)], 1)
        f_conv = self.fc(qkv).transpose(1, 2).reshape(b, -1, h, w)  # (b, head_dim * kernel_conv**2, h, w)
        return self.rate1 * out_att + self.rate2 * self.dep_conv(f_conv)
