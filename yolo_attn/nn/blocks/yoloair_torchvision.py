"""Slices of torchvision classification backbones as YOLO backbone stages, as YOLOAir names them
(iscyy/yoloair ``models/Models/muitlbackbone.py``): ``RegNet1..3`` (RegNetY-400MF), ``Efficient1..3``
(EfficientNet-B0), ``MobileNet1..3`` (MobileNetV3-Small).

Built from torchvision's own models with ``weights=None`` (nothing is downloaded; load a checkpoint to get
pretrained weights). YAML: ``[c2]``: the output channels of the slice, as written; the stage is fixed
by the block name. ``state_dict`` keys are ``model.<i>...`` as in YOLOAir.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchvision import models

from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import ChannelFunction

DECLARED_WIDTH = ChannelFunction(lambda c_in, args: args[0], "[c2] (the slice's output channels, as written)")


class TorchvisionSlice(nn.Module):
    """A run of a torchvision model's layers: ``pick(model)`` lists them; ``builder`` makes the model."""

    builder: Callable[..., nn.Module]
    pick: Callable[[nn.Module], list[nn.Module]]

    def __init__(self, c2: int | None = None):
        super().__init__()
        self.model = nn.Sequential(*type(self).pick(type(self).builder(weights=None)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _regnet(m: nn.Module, stage: int) -> list[nn.Module]:
    blocks = m.trunk_output
    return [m.stem, *blocks[:2]] if stage == 1 else list(blocks[stage])


@register(rule=DECLARED_WIDTH)
class RegNet1(TorchvisionSlice):
    """RegNetY-400MF stem and stages 1-2 (Radosavovic et al., "Designing Network Design Spaces", CVPR 2020,
    arXiv:2003.13678), stride 8, 104 channels. Example: ``[-1, 1, RegNet1, [104]]``."""

    builder, pick = staticmethod(models.regnet_y_400mf), staticmethod(lambda m: _regnet(m, 1))


@register(rule=DECLARED_WIDTH)
class RegNet2(TorchvisionSlice):
    """RegNetY-400MF stage 3 (arXiv:2003.13678), stride 16, 208 channels. Example: ``[-1, 1, RegNet2, [208]]``."""

    builder, pick = staticmethod(models.regnet_y_400mf), staticmethod(lambda m: _regnet(m, 2))


@register(rule=DECLARED_WIDTH)
class RegNet3(TorchvisionSlice):
    """RegNetY-400MF stage 4 (arXiv:2003.13678), stride 32, 440 channels. Example: ``[-1, 1, RegNet3, [440]]``."""

    builder, pick = staticmethod(models.regnet_y_400mf), staticmethod(lambda m: _regnet(m, 3))


@register(rule=DECLARED_WIDTH)
class Efficient1(TorchvisionSlice):
    """EfficientNet-B0 features 0-3 (Tan, Le, "EfficientNet", ICML 2019, arXiv:1905.11946), stride 8,
    40 channels. Example: ``[-1, 1, Efficient1, [40]]``."""

    builder, pick = staticmethod(models.efficientnet_b0), staticmethod(lambda m: list(m.features[:4]))


@register(rule=DECLARED_WIDTH)
class Efficient2(TorchvisionSlice):
    """EfficientNet-B0 features 4-5 (arXiv:1905.11946), stride 16, 112 channels.
    Example: ``[-1, 1, Efficient2, [112]]``."""

    builder, pick = staticmethod(models.efficientnet_b0), staticmethod(lambda m: list(m.features[4:6]))


@register(rule=DECLARED_WIDTH)
class Efficient3(TorchvisionSlice):
    """EfficientNet-B0 features 6-8 (arXiv:1905.11946), stride 32, 1280 channels.
    Example: ``[-1, 1, Efficient3, [1280]]``."""

    builder, pick = staticmethod(models.efficientnet_b0), staticmethod(lambda m: list(m.features[6:]))


@register(rule=DECLARED_WIDTH)
class MobileNet1(TorchvisionSlice):
    """MobileNetV3-Small features 0-3 (Howard et al., "Searching for MobileNetV3", ICCV 2019, arXiv:1905.02244),
    stride 8, 24 channels. Example: ``[-1, 1, MobileNet1, [24]]``."""

    builder, pick = staticmethod(models.mobilenet_v3_small), staticmethod(lambda m: list(m.features[:4]))


@register(rule=DECLARED_WIDTH)
class MobileNet2(TorchvisionSlice):
    """MobileNetV3-Small features 4-8 (arXiv:1905.02244), stride 16, 48 channels.
    Example: ``[-1, 1, MobileNet2, [48]]``."""

    builder, pick = staticmethod(models.mobilenet_v3_small), staticmethod(lambda m: list(m.features[4:9]))


@register(rule=DECLARED_WIDTH)
class MobileNet3(TorchvisionSlice):
    """MobileNetV3-Small features 9-12 (arXiv:1905.02244), stride 32, 576 channels.
    Example: ``[-1, 1, MobileNet3, [576]]``."""

    builder, pick = staticmethod(models.mobilenet_v3_small), staticmethod(lambda m: list(m.features[9:]))
