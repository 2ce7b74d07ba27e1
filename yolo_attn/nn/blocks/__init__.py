"""The YOLO block families; importing this package registers them."""

from yolo_attn.nn.blocks import conv, csp, heads, pooling, shape, torch_nn  # noqa: F401
from yolo_attn.nn.blocks.conv import Conv, CrossConv, DWConv, Focus, GhostConv
from yolo_attn.nn.blocks.csp import C3, C3SPP, C3TR, Bottleneck, BottleneckCSP, C3Ghost, C3x, GhostBottleneck
from yolo_attn.nn.blocks.heads import Detect
from yolo_attn.nn.blocks.pooling import SPP, SPPF
from yolo_attn.nn.blocks.shape import Concat, Contract, Expand

__all__ = [
    "Conv", "CrossConv", "DWConv", "Focus", "GhostConv", "C3", "C3SPP", "C3TR", "Bottleneck", "BottleneckCSP",
    "C3Ghost", "C3x", "GhostBottleneck", "Detect", "SPP", "SPPF", "Concat", "Contract", "Expand",
]
