"""Swin Transformer layers in a C3 (YOLOAir's C3STR; iscyy/yoloair ``models/Models/SwinTransformer.py``).

Swin: Liu et al., "Swin Transformer: Hierarchical Vision Transformer using Shifted Windows", ICCV 2021,
arXiv:2103.14030. Attribute names follow YOLOAir so that parameter counts and ``state_dict`` keys match.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from yolo_attn.nn.blocks.csp import C3
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import CSP


def window_partition(x: torch.Tensor, w: int) -> torch.Tensor:
    """(b, h, w', c) -> (b * windows, w * w, c)."""
    b, h, wd, c = x.shape
    return x.view(b, h // w, w, wd // w, w, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, w * w, c)


def window_reverse(windows: torch.Tensor, w: int, h: int, wd: int) -> torch.Tensor:
    """(b * windows, w * w, c) -> (b, h, wd, c)."""
    b = windows.shape[0] // ((h // w) * (wd // w))
    return windows.view(b, h // w, wd // w, w, w, -1).permute(0, 1, 3, 2, 4, 5).reshape(b, h, wd, -1)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside ``window x window`` windows with a learned relative position bias."""

    relative_position_index: torch.Tensor  # buffer

    def __init__(self, dim: int, window: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
        self.register_buffer("relative_position_index", rel[..., 0] * (2 * window - 1) + rel[..., 1])
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        attn = (q * self.scale) @ k.transpose(-2, -1) + bias.permute(2, 0, 1)[None]
        if mask is not None:
            attn = attn.view(-1, mask.shape[0], self.num_heads, n, n) + mask[None, :, None]
            attn = attn.view(-1, self.num_heads, n, n)
        return self.proj((attn.softmax(-1) @ v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """Linear -> GELU -> Linear."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinTransformerLayer(nn.Module):
    """One Swin layer on a (b, c, h, w) map: (shifted) window attention and an MLP, pre-norm, residual. The map
    is zero-padded to a multiple of the window and cropped back, as in YOLOAir."""

    def __init__(self, dim: int, num_heads: int, window_size: int = 8, shift_size: int = 0, mlp_ratio: float = 4.0):
        super().__init__()
        if not 0 <= shift_size < window_size:
            raise ValueError(f"shift_size must be in [0, window_size), got {shift_size!r}")
        self.window_size, self.shift_size = window_size, shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def shift_mask(self, h: int, w: int, device: torch.device) -> torch.Tensor:
        """-100 between positions that the cyclic shift brought from different regions, else 0."""
        regions = torch.zeros(1, h, w, 1, device=device)
        cuts = (slice(0, -self.window_size), slice(-self.window_size, -self.shift_size), slice(-self.shift_size, None))
        for i, (hs, ws) in enumerate((hs, ws) for hs in cuts for ws in cuts):
            regions[:, hs, ws] = i
        ids = window_partition(regions, self.window_size).squeeze(-1)
        return (ids[:, None, :] - ids[:, :, None]).ne(0).float() * -100.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, h0, w0 = x.shape
        ws = self.window_size
        x = F.pad(x, (0, (ws - w0 % ws) % ws, 0, (ws - h0 % ws) % ws))
        b, c, h, w = x.shape
        tokens = x.permute(0, 2, 3, 1).reshape(b, h * w, c)
        y = self.norm1(tokens).view(b, h, w, c)
        mask = None
        if self.shift_size:
            y = torch.roll(y, (-self.shift_size, -self.shift_size), (1, 2))
            mask = self.shift_mask(h, w, x.device)
        y = window_reverse(self.attn(window_partition(y, ws), mask), ws, h, w)
        if self.shift_size:
            y = torch.roll(y, (self.shift_size, self.shift_size), (1, 2))
        tokens = tokens + y.reshape(b, h * w, c)
        tokens = tokens + self.mlp(self.norm2(tokens))
        return tokens.transpose(1, 2).reshape(b, c, h, w)[:, :, :h0, :w0]


class SwinTransformerBlock(nn.Module):
    """``num_layers`` Swin layers alternating plain and half-window-shifted windows (a 1x1 Conv first when
    the widths differ)."""

    def __init__(self, c1: int, c2: int, num_heads: int, num_layers: int, window_size: int = 8):
        super().__init__()
        if c1 != c2:
            raise ValueError(f"SwinTransformerBlock keeps its width, got {c1} -> {c2}")
        self.blocks = nn.Sequential(*(
            SwinTransformerLayer(c2, num_heads, window_size, 0 if i % 2 == 0 else window_size // 2)
            for i in range(num_layers)
        ))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


@register(rule=CSP)
class C3STR(C3):
    """C3 with Swin Transformer layers inside (arXiv:2103.14030), ``c_ // 32`` heads, window 8.
    YAML: ``[c2, shortcut=True, g=1, e=0.5]``; number = Swin layers. Example: ``[-1, 1, C3STR, [128]]``."""

    def inner(self, c_: int, n: int, shortcut: bool, g: int) -> nn.Module:
        return SwinTransformerBlock(c_, c_, c_ // 32, n)
