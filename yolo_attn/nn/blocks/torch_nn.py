"""The torch.nn layers a model YAML may name (``nn.Upsample``, ``nn.Identity``, ...).

This explicit allow-list replaces YOLOv5's ``eval(module_name)``: a name not listed here is
an unknown block, never a Python expression.
"""

from __future__ import annotations

from torch import nn

from yolo_attn.nn.registry import register_external
from yolo_attn.nn.rules import PASS_THROUGH, PREPEND_INPUT, ChannelFunction, ConvLike

_CHANNEL_KEEPING = (
    nn.Upsample, nn.Identity, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
    nn.ZeroPad2d, nn.Dropout, nn.Dropout2d, nn.ReLU, nn.ReLU6, nn.SiLU, nn.LeakyReLU, nn.Hardswish,
    nn.Hardsigmoid, nn.Sigmoid, nn.Mish, nn.GELU, nn.Tanh,
)
_TAKING_CHANNELS = (nn.BatchNorm2d, nn.InstanceNorm2d)

_cls: type[nn.Module]
for _cls in _CHANNEL_KEEPING:
    register_external(_cls, rule=PASS_THROUGH, name=f"nn.{_cls.__name__}")
for _cls in _TAKING_CHANNELS:
    register_external(_cls, rule=PREPEND_INPUT, name=f"nn.{_cls.__name__}")
# YOLOAir scales a 7th constructor arg (YAML position 5, ``groups``) by the width gain; so do we.
register_external(
    nn.ConvTranspose2d, rule=ConvLike(extra_widths=(5,), signature="[c2, kernel_size, stride=1, padding=0, ...]"),
    name="nn.ConvTranspose2d",
)
register_external(
    nn.PixelShuffle, rule=ChannelFunction(lambda c_in, args: c_in[0] // args[0] ** 2, "[upscale_factor]"),
    name="nn.PixelShuffle",
)
register_external(
    nn.PixelUnshuffle, rule=ChannelFunction(lambda c_in, args: c_in[0] * args[0] ** 2, "[downscale_factor]"),
    name="nn.PixelUnshuffle",
)

# The activations a YAML may construct inline, e.g. ``activation: nn.LeakyReLU(0.1)``.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    cls.__name__: cls
    for cls in (nn.ReLU, nn.ReLU6, nn.SiLU, nn.LeakyReLU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Mish,
                nn.GELU, nn.Tanh, nn.Identity, nn.ELU, nn.PReLU)
}
