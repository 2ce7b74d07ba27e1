"""yolo-attn: YAML-driven YOLO model builder and trainer with an attention-block zoo.

The Python API: :func:`build_model` (a model from a YAML), :func:`load_model` (weights, ours or
YOLOv5/YOLOv7's), :func:`train` (:class:`TrainConfig`), :func:`evaluate` (:class:`EvalConfig`) and
:func:`predict`. The training and evaluation parts are imported on first use.
"""

__version__ = "0.1.0"

from yolo_attn.nn import DetectionModel, ModelConfigError, build_model  # noqa: E402

_LAZY = {
    "load_model": "yolo_attn.checkpoint",
    "train": "yolo_attn.engine.trainer",
    "TrainConfig": "yolo_attn.engine.trainer",
    "evaluate": "yolo_attn.engine.validator",
    "EvalConfig": "yolo_attn.engine.validator",
    "predict": "yolo_attn.engine.predictor",
}

__all__ = ["DetectionModel", "ModelConfigError", "__version__", "build_model", *_LAZY]


def __getattr__(name: str):
    # Training and evaluation pull in data and COCO tooling; import them only when asked for.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'yolo_attn' has no attribute {name!r}")
