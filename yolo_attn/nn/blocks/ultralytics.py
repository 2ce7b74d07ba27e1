"""Blocks of Ultralytics' YOLOv8 (Jocher, Chaurasia, Qiu, 2023), YOLO11 (Jocher, Qiu, 2024) and YOLO12 (Tian, Ye,
Doermann, "YOLOv12: Attention-Centric Real-Time Object Detectors", arXiv:2502.12524, 2025), with the sub-module
names of ultralytics/ultralytics ``nn/modules/block.py`` so that its checkpoints load by key.

- C2: a CSP stage with two convolutions (yolov8-p6).
- C2f: a CSP stage (Wang et al., CSPNet, CVPRW 2020) that concatenates the output of every inner bottleneck.
- C3k2: C2f whose inner blocks are bottlenecks or C3k (a C3 with k x k bottlenecks).
- C2PSA: a C2f-style split with position-sensitive multi-head self-attention blocks on one half (YOLO11).
- A2C2f: YOLO12's residual ELAN stage with area attention (ABlock / AAttn).
- SCDown: YOLOv10's spatial-channel decoupled down-sampling (point-wise, then depth-wise strided conv).

Ultralytics picks some constructor flags from the model scale (C3k2's ``c3k`` at m/l/x, A2C2f's residual
branch at l/x); :class:`PerScaleCSP` declares those beside the blocks, so the builder stays generic.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch
from torch import nn

from yolo_attn.nn.blocks.conv import Conv
from yolo_attn.nn.blocks.csp import C3, Bottleneck
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import CONV, CSP, ConvLike, LayerContext, Resolved


@dataclass(frozen=True)
class PerScaleCSP(ConvLike):
    """The CSP rule (``[c2, *args]``, number -> internal repeats) plus Ultralytics' per-scale overrides: when the
    model's scale is in ``scales``, the constructor args from ``position`` on become ``values`` (appended when
    the YAML line is shorter), as Ultralytics' ``parse_model`` does for C3k2 and A2C2f."""

    repeat_inside: bool = True
    scales: tuple[str, ...] = ()
    position: int = 3
    values: tuple[Any, ...] = ()
    signature: str = "[c2, *args] (number -> internal repeats)"

    def resolve(self, args: list[Any], ctx: LayerContext) -> Resolved:
        resolved = super().resolve(args, ctx)
        if ctx.scale not in self.scales:
            return resolved
        built = list(resolved.args)
        built[self.position : self.position + len(self.values)] = self.values
        return replace(resolved, args=built)


@register(rule=CSP)
class C2f(nn.Module):
    """CSP stage keeping every inner output (YOLOv8). YAML: ``[c2, shortcut=False, g=1, e=0.5]``; number = repeats.

    ``cv1`` splits into two halves of ``c2 * e`` channels; each inner block reads the previous output; ``cv2``
    fuses the halves and all inner outputs.
    """

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = False, g: int = 1, e: float = 0.5):
        super().__init__()
        self.c = int(c2 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv((2 + n) * self.c, c2, 1)
        self.m = nn.ModuleList(self.inner(shortcut, g) for _ in range(n))

    def inner(self, shortcut: bool, g: int) -> nn.Module:
        """One repeated inner block on ``self.c`` channels; C3k2 overrides only this."""
        return Bottleneck(self.c, self.c, shortcut, g, e=1.0, k=(3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = list(self.cv1(x).chunk(2, 1))
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


@register(rule=CSP)
class C2(nn.Module):
    """CSP stage with two convolutions (Ultralytics, used by yolov8-p6): one half of ``cv1`` runs through ``n``
    3x3 bottlenecks, the other bypasses them. YAML: ``[c2, shortcut=True, g=1, e=0.5]``; number = repeats."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__()
        self.c = int(c2 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv(2 * self.c, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(self.c, self.c, shortcut, g, e=1.0, k=(3, 3)) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.cv1(x).chunk(2, 1)
        return self.cv2(torch.cat((self.m(a), b), 1))


class C3k(C3):
    """C3 whose bottlenecks use two ``k x k`` convolutions (YOLO11's inner block of C3k2 and A2C2f)."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5, k: int = 3):
        self.kernel = k
        super().__init__(c1, c2, n, shortcut, g, e)

    def inner(self, c_: int, n: int, shortcut: bool, g: int) -> nn.Module:
        return nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, e=1.0, k=(self.kernel, self.kernel)) for _ in range(n)))


@register(rule=PerScaleCSP(scales=("m", "l", "x"), position=3, values=(True,)))
class C3k2(C2f):
    """C2f with bottleneck, C3k or bottleneck + PSA inner blocks (YOLO11).
    YAML: ``[c2, c3k=False, e=0.5, attn=False, g=1, shortcut=True]``; number = repeats; ``c3k`` is forced at m/l/x."""

    depthwise_detect_head: ClassVar[bool] = True  # Ultralytics' Detect uses its depth-wise class branch with it

    def __init__(self, c1: int, c2: int, n: int = 1, c3k: bool = False, e: float = 0.5, attn: bool = False,
                 g: int = 1, shortcut: bool = True):
        self.use_c3k, self.use_attn = c3k, attn
        super().__init__(c1, c2, n, shortcut, g, e)

    def inner(self, shortcut: bool, g: int) -> nn.Module:
        if self.use_attn:
            return nn.Sequential(
                Bottleneck(self.c, self.c, shortcut, g, k=(3, 3)),
                PSABlock(self.c, attn_ratio=0.5, num_heads=max(self.c // 64, 1)),
            )
        if self.use_c3k:
            return C3k(self.c, self.c, 2, shortcut, g)
        return Bottleneck(self.c, self.c, shortcut, g, k=(3, 3))


class PositionSensitiveAttention(nn.Module):
    """Multi-head self-attention over all positions with a depth-wise 3x3 positional encoding of the values
    (YOLO11's PSA attention; Ultralytics ``Attention``). Keys/queries have ``attn_ratio`` of the head width."""

    def __init__(self, dim: int, num_heads: int = 8, attn_ratio: float = 0.5):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.key_dim = int(self.head_dim * attn_ratio)
        self.scale = self.key_dim**-0.5
        self.qkv = Conv(dim, dim + 2 * self.key_dim * num_heads, 1, act=False)
        self.proj = Conv(dim, dim, 1, act=False)
        self.pe = Conv(dim, dim, 3, 1, g=dim, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        per_head = self.qkv(x).view(b, self.num_heads, 2 * self.key_dim + self.head_dim, h * w)
        q, k, v = per_head.split((self.key_dim, self.key_dim, self.head_dim), 2)
        weights = ((q * self.scale).transpose(-2, -1) @ k).softmax(-1)
        out = (v @ weights.transpose(-2, -1)).view(b, c, h, w) + self.pe(v.reshape(b, c, h, w))
        return self.proj(out)


class PSABlock(nn.Module):
    """Position-sensitive attention then a 2x point-wise feed-forward, each with a residual (YOLO11)."""

    def __init__(self, c: int, attn_ratio: float = 0.5, num_heads: int = 4, shortcut: bool = True):
        super().__init__()
        self.attn = PositionSensitiveAttention(c, num_heads, attn_ratio)
        self.ffn = nn.Sequential(Conv(c, c * 2, 1), Conv(c * 2, c, 1, act=False))
        self.add = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x) if self.add else self.attn(x)
        return x + self.ffn(x) if self.add else self.ffn(x)


class HalfRefined(nn.Module):
    """The frame of YOLOv10's PSA and YOLO11's C2PSA: a 1x1 conv ``cv1`` makes two halves of ``c1 * e`` channels,
    :meth:`refine` transforms the second, and a 1x1 conv ``cv2`` fuses both back to ``c1``. Keeps its input channels
    (``c2`` must equal ``c1``). Subclasses add their refining modules after calling this constructor, which keeps
    Ultralytics' key order (``cv1``, ``cv2``, then theirs)."""

    def __init__(self, c1: int, c2: int, e: float):
        super().__init__()
        if c1 != c2:
            raise ValueError(
                f"{type(self).__name__} keeps its input channels, but the output width is {c2} for {c1} input channels"
            )
        self.c = int(c1 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv(2 * self.c, c1, 1)

    def refine(self, half: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.cv1(x).split((self.c, self.c), 1)
        return self.cv2(torch.cat((a, self.refine(b)), 1))


@register(rule=CSP)
class C2PSA(HalfRefined):
    """Split in two halves; ``n`` PSA blocks refine one; a 1x1 conv fuses both (YOLO11). YAML: ``[c2=c1, e=0.5]``;
    number = PSA blocks. Keeps its input channels."""

    def __init__(self, c1: int, c2: int, n: int = 1, e: float = 0.5):
        super().__init__(c1, c2, e)
        self.m = nn.Sequential(*(PSABlock(self.c, attn_ratio=0.5, num_heads=max(self.c // 64, 1)) for _ in range(n)))

    def refine(self, half: torch.Tensor) -> torch.Tensor:
        return self.m(half)


class AreaAttention(nn.Module):
    """YOLO12's area attention (Ultralytics ``AAttn``): the flattened map is cut into ``area`` equal runs of
    rows and attention runs inside each run; a depth-wise 7x7 conv of the values adds position information."""

    def __init__(self, dim: int, num_heads: int, area: int = 1):
        super().__init__()
        self.area, self.num_heads = area, num_heads
        self.head_dim = dim // num_heads
        self.all_head_dim = self.head_dim * num_heads
        self.qkv = Conv(dim, self.all_head_dim * 3, 1, act=False)
        self.proj = Conv(self.all_head_dim, dim, 1, act=False)
        self.pe = Conv(self.all_head_dim, self.all_head_dim, 7, 1, 3, g=self.all_head_dim, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        area = max(self.area, 1)
        tokens = self.qkv(x).flatten(2).transpose(1, 2)  # (b, h*w, 3 * all_head_dim)
        tokens = tokens.reshape(b * area, h * w // area, self.num_heads, 3 * self.head_dim).permute(0, 2, 3, 1)
        q, k, v = tokens.split(self.head_dim, 2)  # each (b * area, heads, head_dim, tokens per area)
        weights = ((q * self.head_dim**-0.5).transpose(-2, -1) @ k).softmax(-1)
        out = v @ weights.transpose(-2, -1)
        out, v = (t.permute(0, 3, 1, 2).reshape(b, h, w, self.all_head_dim).permute(0, 3, 1, 2) for t in (out, v))
        return self.proj(out + self.pe(v.contiguous()))


class AreaAttentionBlock(nn.Module):
    """Area attention then a point-wise MLP (``mlp_ratio`` hidden width), each residual (YOLO12 ``ABlock``);
    convolution weights start from a truncated normal with std 0.02, as there."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 1.2, area: int = 1):
        super().__init__()
        self.attn = AreaAttention(dim, num_heads, area)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(Conv(dim, hidden, 1), Conv(hidden, dim, 1, act=False))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.trunc_normal_(m.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)


@register(rule=PerScaleCSP(scales=("l", "x"), position=5, values=(True, 1.2)))
class A2C2f(nn.Module):
    """YOLO12's residual ELAN stage with area attention. YAML: ``[c2, a2=True, area=1, residual=False,
    mlp_ratio=2.0, e=0.5, g=1, shortcut=True]``; number = inner stages (two ABlocks each, or a C3k when ``a2``
    is false); at scales l/x ``residual=True, mlp_ratio=1.2`` as Ultralytics sets them."""

    depthwise_detect_head: ClassVar[bool] = True  # Ultralytics' Detect uses its depth-wise class branch with it

    def __init__(self, c1: int, c2: int, n: int = 1, a2: bool = True, area: int = 1, residual: bool = False,
                 mlp_ratio: float = 2.0, e: float = 0.5, g: int = 1, shortcut: bool = True):
        super().__init__()
        c_ = int(c2 * e)
        if c_ % 32:
            raise ValueError(f"A2C2f's hidden width {c_} (c2 * e) must be a multiple of 32 (32 channels per head)")
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv((1 + n) * c_, c2, 1)
        self.gamma = nn.Parameter(0.01 * torch.ones(c2)) if a2 and residual else None
        self.m = nn.ModuleList(
            nn.Sequential(*(AreaAttentionBlock(c_, c_ // 32, mlp_ratio, area) for _ in range(2)))
            if a2 else C3k(c_, c_, 2, shortcut, g)
            for _ in range(n)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.cv1(x)]
        y.extend(m(y[-1]) for m in self.m)
        out = self.cv2(torch.cat(y, 1))
        return x + self.gamma.view(1, -1, 1, 1) * out if self.gamma is not None else out


@register(rule=CONV)
class SCDown(nn.Module):
    """Spatial-channel decoupled down-sampling (Wang et al., "YOLOv10", NeurIPS 2024, arXiv:2405.14458): a 1x1 conv
    to ``c2`` channels, then a depth-wise ``k x k`` conv with stride ``s``. YAML: ``[c2, k, s]``."""

    def __init__(self, c1: int, c2: int, k: int, s: int):
        super().__init__()
        self.cv1 = Conv(c1, c2, 1, 1)
        self.cv2 = Conv(c2, c2, k, s, g=c2, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv2(self.cv1(x))


@register(rule=CONV, name="Bottleneck", schema="ultralytics")
class UltralyticsBottleneck(Bottleneck):
    """Ultralytics' ``Bottleneck``, as a YAML line of that schema means it (YOLOv3 / YOLOv3-SPP): two 3x3 convs
    by default where YOLOv5's is 1x1 then 3x3. YAML: ``[c2, shortcut=True, g=1, k=(3, 3), e=0.5]``;
    ``number`` stacks copies."""

    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1, k: tuple[int, int] = (3, 3),
                 e: float = 0.5):
        super().__init__(c1, c2, shortcut, g, e=e, k=tuple(k))
