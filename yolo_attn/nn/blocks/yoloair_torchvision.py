"""Slices of torchvision classification backbones as YOLO backbone stages, as YOLOAir names them
(iscyy/yoloair ``models/Models/muitlbackbone.py``): ``RegNet1..3`` (RegNetY-400MF), ``Efficient1..3``
(EfficientNet-B0), ``MobileNet1..3`` (MobileNetV3-Small).

Built from torchvision's own models with ``weights=None`` (nothing is downloaded; load a checkpoint to get
pretrained weights). YAML: ``[c2]``: the output channels of the slice, as written; the stage is fixed
by the block name. ``state_dict`` keys are ``model.<i>...`` as in YOLOAir.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

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


def _regnet(m: Any, stage: int) -> list[nn.Module]:  # m: torchvision's RegNet (torchvision has no types)
    blocks = m.trunk_output
    return [m.stem, *blocks[:2]] if stage == 1 else list(blocks[stage])


_STAGES = "stem and stages 1-2, stride 8", "stage 3, stride 16", "stage 4, stride 32"
_PAPERS = {
    "RegNet": ("RegNetY-400MF", 'Radosavovic et al., "Designing Network Design Spaces", CVPR 2020, arXiv:2003.13678'),
    "Efficient": ("EfficientNet-B0", 'Tan, Le, "EfficientNet", ICML 2019, arXiv:1905.11946'),
    "MobileNet": ("MobileNetV3-Small", 'Howard et al., "Searching for MobileNetV3", ICCV 2019, arXiv:1905.02244'),
}
# name -> (torchvision builder, the layers it keeps, what they are, output channels)
_SLICES = {
    "RegNet1": ("regnet_y_400mf", lambda m: _regnet(m, 1), _STAGES[0], 104),
    "RegNet2": ("regnet_y_400mf", lambda m: _regnet(m, 2), _STAGES[1], 208),
    "RegNet3": ("regnet_y_400mf", lambda m: _regnet(m, 3), _STAGES[2], 440),
    "Efficient1": ("efficientnet_b0", lambda m: list(m.features[:4]), "features 0-3, stride 8", 40),
    "Efficient2": ("efficientnet_b0", lambda m: list(m.features[4:6]), "features 4-5, stride 16", 112),
    "Efficient3": ("efficientnet_b0", lambda m: list(m.features[6:]), "features 6-8, stride 32", 1280),
    "MobileNet1": ("mobilenet_v3_small", lambda m: list(m.features[:4]), "features 0-3, stride 8", 24),
    "MobileNet2": ("mobilenet_v3_small", lambda m: list(m.features[4:9]), "features 4-8, stride 16", 48),
    "MobileNet3": ("mobilenet_v3_small", lambda m: list(m.features[9:]), "features 9-12, stride 32", 576),
}


def _torchvision_model(name: str):
    """torchvision's model constructor ``name``, imported when a block is built (torchvision is slow to import)."""

    def build(**kwargs):
        return getattr(importlib.import_module("torchvision.models"), name)(**kwargs)

    return build


def _slice_class(name: str, builder, pick, what: str, c2: int) -> type[TorchvisionSlice]:
    model, paper = _PAPERS[name.rstrip("123")]
    doc = f"{model} {what}, {c2} channels ({paper}). Example: ``[-1, 1, {name}, [{c2}]]``."
    attrs = {"builder": staticmethod(_torchvision_model(builder)), "pick": staticmethod(pick), "__doc__": doc,
             "__module__": __name__}
    return register(rule=DECLARED_WIDTH)(type(name, (TorchvisionSlice,), attrs))


globals().update({name: _slice_class(name, *spec) for name, spec in _SLICES.items()})
