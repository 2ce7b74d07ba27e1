"""The detection model: an ``nn.Sequential`` of blocks routed by each layer's ``from`` indices."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, cast

import torch
from torch import nn

if TYPE_CHECKING:
    from yolo_attn.nn.builder import LayerRecord


class Layer(Protocol):
    """What the builder sets on each layer of :attr:`DetectionModel.model` beside the block itself."""

    i: int  # index
    f: int | list[int]  # ``from``: the layers it reads (-1: the previous one)
    type: str  # YAML name
    np: int  # parameters

    def __call__(self, x: Any) -> Any: ...


def tagged(layer: nn.Module) -> Layer:
    """``layer`` (of a built model) with the builder's tags typed."""
    return cast(Layer, layer)  # torch types a module's attributes as Tensor | Module; the builder set these


class DetectionModel(nn.Module):
    """A YOLO model built from a YAML dict by :func:`yolo_attn.nn.builder.build_model`.

    Its module tree and ``state_dict`` keys match YOLOv5/YOLOv7 (``model.0.conv.weight``, ...).
    Each layer carries ``i`` (index), ``f`` (from), ``type`` (YAML name) and ``np`` (parameters): see :func:`tagged`.
    """

    layer_records: list[LayerRecord]  # set by build_model: each layer as the summary shows it

    def __init__(self, layers: nn.Sequential, save: list[int], yaml: dict[str, Any], names: list[str] | None = None):
        super().__init__()
        self.model = layers
        self.save = save
        self.yaml = yaml
        self.nc = int(yaml["nc"])
        self.names = names or [str(i) for i in range(self.nc)]
        self.stride = torch.tensor([32.0])

    @property
    def head(self) -> nn.Module:
        """The last layer (Detect, IDetect, ...)."""
        return self.model[-1]

    def forward(self, x: torch.Tensor) -> Any:
        outputs: list[Any] = []  # the outputs of the layers in ``save`` (a tensor, or a tuple of them)
        y: Any = x
        for m in map(tagged, self.model):
            if m.f != -1:
                y = outputs[m.f] if isinstance(m.f, int) else [y if j == -1 else outputs[j] for j in m.f]
            y = m(y)
            outputs.append(y if m.i in self.save else None)
        return y

    @torch.no_grad()
    def fuse(self) -> DetectionModel:
        """Re-parameterise for inference: every sub-module with a ``fuse()`` folds itself (Conv+BN, RepConv, ...)."""
        for m in list(self.modules()):
            fuse = getattr(m, "fuse", None)
            if m is not self and callable(fuse):
                fuse()
        return self


def layer_label(layer: nn.Module) -> str:
    """``layer 7 (CBAM)``: a layer of a :class:`DetectionModel` as messages name it, by index and YAML block name."""
    return f"layer {layer.i} ({layer.type})"


def max_stride(model: nn.Module) -> int:
    """The model's largest stride, at least 32 (image sizes and letterbox padding are multiples of it)."""
    stride = getattr(model, "stride", None)
    return max(int(stride.max()) if isinstance(stride, torch.Tensor) else 32, 32)


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s parameters (CPU for a model without any)."""
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


@torch.no_grad()
def try_channels_last(model: nn.Module) -> bool:
    """Switch ``model`` to channels-last (NHWC) weights, with which CPU convolutions run 10-20% faster, unless
    a block cannot take NHWC tensors (a ``view`` of its input): an eval-mode forward of two small zero
    images finds that out (two, since merging the batch axis with another is what NHWC strides forbid),
    and the model then stays contiguous. Returns whether it switched; the mode is kept."""
    was_training = model.training
    model.eval().to(memory_format=torch.channels_last)
    side = 4 * max_stride(model)  # the deepest maps 4x4: some blocks refuse smaller ones
    try:
        model(torch.zeros(2, 3, side, side, device=model_device(model)).to(memory_format=torch.channels_last))
    except Exception:  # noqa: BLE001 - whatever fails here, the contiguous model's own run reports it
        model.to(memory_format=torch.contiguous_format)
        return False
    finally:
        model.train(was_training)
    return True
