"""The YOLO block families; importing this package registers them."""

from yolo_attn.nn.blocks import conv, csp, heads, implicit, pooling, shape, torch_nn, yolov7, yoloair  # noqa: F401
from yolo_attn.nn.blocks.conv import Conv, CrossConv, DWConv, Focus, GhostConv
from yolo_attn.nn.blocks.csp import C3, C3SPP, C3TR, Bottleneck, BottleneckCSP, C3Ghost, C3x, GhostBottleneck
from yolo_attn.nn.blocks.heads import Detect, IAuxDetect, IDetect
from yolo_attn.nn.blocks.implicit import ImplicitA, ImplicitM
from yolo_attn.nn.blocks.pooling import SPP, SPPF
from yolo_attn.nn.blocks.shape import Concat, Contract, Expand
from yolo_attn.nn.blocks.yolov7 import MP, SP, SPPCSPC, DownC, RepConv, ReOrg, Shortcut

__all__ = [
    "Conv", "CrossConv", "DWConv", "Focus", "GhostConv", "C3", "C3SPP", "C3TR", "Bottleneck", "BottleneckCSP",
    "C3Ghost", "C3x", "GhostBottleneck", "Detect", "SPP", "SPPF", "Concat", "Contract", "Expand",
    "IDetect", "IAuxDetect", "ImplicitA", "ImplicitM", "MP", "SP", "SPPCSPC", "DownC", "RepConv", "ReOrg", "Shortcut",
]
