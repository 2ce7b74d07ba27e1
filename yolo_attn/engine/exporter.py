"""ONNX export of the fused model (``yolo-attn export``) (as YOLOv5's ``export.py --include onnx``).

The model is re-parameterised (``DetectionModel.fuse()``: Conv+BN, RepConv, implicit layers) and
its head set to ``export`` so the graph's one output is the decoded ``(batch, anchors, 5 + nc)`` tensor (an
end-to-end head's: its final ``(batch, max_det, 6)`` detections, x1, y1, x2, y2, score, class).
onnx and onnxruntime come with the ``export`` extra (``pip install yolo-attn[export]``).
"""

from __future__ import annotations

import importlib
import json
import warnings
from pathlib import Path
from types import ModuleType
from typing import cast

import torch

from yolo_attn.errors import UserError
from yolo_attn.nn.heads.contract import DetectionHead
from yolo_attn.nn.model import DetectionModel, model_device

DEFAULT_OPSET = 17
INPUT_NAME, OUTPUT_NAME = "images", "output"


def require(module: str) -> ModuleType:
    """Import an optional dependency of the ``export`` extra, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"ONNX export needs {module}: pip install 'yolo-attn[export]'") from None


def image_shape(img: list[int], stride: int) -> tuple[int, int]:
    """``--img`` (one size, or height and width) as (h, w); each must be a multiple of ``stride``."""
    if len(img) not in (1, 2):
        raise UserError(f"--img takes one size or height and width, got {len(img)} values")
    h, w = (img[0], img[0]) if len(img) == 1 else img
    if h <= 0 or w <= 0 or h % stride or w % stride:
        raise UserError(f"--img {h}x{w}: both sides must be positive multiples of the model's stride {stride}")
    return h, w


def prepare_for_export(model: DetectionModel) -> DetectionModel:
    """Fuse, switch to eval and make the head return only the decoded tensor (in place)."""
    model.fuse().eval().float()
    cast(DetectionHead, model.head).export = True  # every head has the contract's export flag
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def export_onnx(
    model: DetectionModel, path: str | Path, shape: tuple[int, int] = (640, 640), dynamic: bool = False,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Export ``model`` (fused in place) to ONNX at ``path``; input ``images`` (b, 3, h, w), output ``output``.

    ``dynamic`` makes batch, height and width symbolic. Class names and strides go into the metadata.
    """
    onnx = require("onnx")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = prepare_for_export(model)
    device = model_device(model)
    dummy = torch.zeros(1, 3, *shape, device=device)
    dynamic_axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}, OUTPUT_NAME: {0: "batch", 1: "anchors"}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notices
        torch.onnx.export(
            model, (dummy,), str(path), dynamo=False, opset_version=opset, do_constant_folding=True,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes=dynamic_axes if dynamic else None,
        )
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    metadata = {"stride": json.dumps([int(s) for s in model.stride.tolist()]), "names": json.dumps(list(model.names))}
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))
    return path
