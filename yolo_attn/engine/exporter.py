"""ONNX export of the fused model (``yolo-attn export``) (as YOLOv5's ``export.py --include onnx``).

The model is re-parameterised (``DetectionModel.fuse()``: Conv+BN, RepConv, implicit layers) and
its head set to ``export`` so the graph's one output is the decoded ``(batch, anchors, 5 + nc)`` tensor (``4 + nc``
without objectness), for NMS. An end-to-end head (YOLOv10, YOLO26) exports the same from its one-to-many branch, as
Ultralytics 8.4 does by default; with ``nms_free`` (Ultralytics' ``nms=False``) its one-to-one branch's final
``(batch, k, 6)`` detections instead (x1, y1, x2, y2, score, class; ``k = min(max_det, anchors)``). Tracing keeps
whichever of the two was smaller at the export size, so a ``dynamic`` NMS-free graph is exported only from a size
with at least ``max_det`` anchors: its ``k`` is then ``max_det``, and its inputs need that many anchors too.
onnx and onnxruntime come with the ``export`` extra (``pip install yolo-attn[export]``).
"""

from __future__ import annotations

import importlib
import json
import math
import warnings
from pathlib import Path
from types import ModuleType
from typing import cast

import torch

from yolo_attn.errors import UserError
from yolo_attn.nn.heads import check_nms_free, configure_end_to_end
from yolo_attn.nn.heads.contract import DetectionHead
from yolo_attn.nn.model import DetectionModel, model_device

DEFAULT_OPSET = 17
INPUT_NAME, OUTPUT_NAME = "images", "output"
MAX_DET = 300  # an end-to-end head's detections per image in an NMS-free graph (Ultralytics' export default)


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


def prepare_for_export(model: DetectionModel, nms_free: bool = False, max_det: int = MAX_DET,
                       ) -> DetectionModel:
    """Fuse, switch to eval and make the head return only the decoded tensor, or with ``nms_free`` an end-to-end
    head's ``max_det`` final detections (in place)."""
    configure_end_to_end(model, max_det, nms_free=nms_free)
    model.fuse().eval().float()
    cast(DetectionHead, model.head).export = True  # every head has the contract's export flag
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def check_top_k_size(model: DetectionModel, shape: tuple[int, int], max_det: int = MAX_DET) -> None:
    """A dynamic NMS-free graph keeps ``k = max_det`` only when traced at a size with at least ``max_det`` anchors
    (else ``k`` would follow each input's anchor count)."""
    anchors = sum(math.ceil(shape[0] / s) * math.ceil(shape[1] / s) for s in model.stride.tolist())
    if anchors < max_det:
        raise UserError(f"--dynamic --nms-free: {shape[0]}x{shape[1]} gives {anchors} anchors, fewer than the "
                        f"{max_det} detections the graph keeps; export at a larger --img (e.g. 640)")


def export_onnx(
    model: DetectionModel, path: str | Path, shape: tuple[int, int] = (640, 640), dynamic: bool = False,
    opset: int = DEFAULT_OPSET, nms_free: bool = False,
) -> Path:
    """Export ``model`` (fused in place) to ONNX at ``path``; input ``images`` (b, 3, h, w), output ``output``.

    ``dynamic`` makes batch, height and width symbolic; ``nms_free``: an end-to-end head's final detections (a
    :class:`UserError` for other heads). Class names, strides and ``nms_free`` go into the metadata.
    """
    onnx = require("onnx")
    path = Path(path)
    if dynamic and nms_free:
        check_nms_free(model, nms_free)
        check_top_k_size(model, shape)
    model = prepare_for_export(model, nms_free)
    path.parent.mkdir(parents=True, exist_ok=True)
    device = model_device(model)
    dummy = torch.zeros(1, 3, *shape, device=device)
    rows = "detections" if nms_free else "anchors"
    dynamic_axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}, OUTPUT_NAME: {0: "batch", 1: rows}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notices
        torch.onnx.export(
            model, (dummy,), str(path), dynamo=False, opset_version=opset, do_constant_folding=True,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes=dynamic_axes if dynamic else None,
        )
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    metadata = {"stride": json.dumps([int(s) for s in model.stride.tolist()]), "names": json.dumps(list(model.names)),
                "nms_free": json.dumps(nms_free)}
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))
    return path
