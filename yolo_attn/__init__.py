"""yolo-attn: YAML-driven YOLO model builder and trainer with an attention-block zoo.

The Python API: :func:`build_model` (a model from a YAML), :func:`load_model` (weights, ours or
YOLOv5/YOLOv7's), :func:`train` (:class:`TrainConfig`), :func:`evaluate` (:class:`EvalConfig`) and
:func:`predict`; :func:`load_plugin` (blocks of your own file or module) and :func:`register` (the decorator the
built-in blocks use). The training and evaluation parts are imported on first use.
"""

__version__ = "0.1.0"

_LAZY = {  # nothing imports torch before the command line has set up the process (yolo_attn.utils.runtime)
    "DetectionModel": "yolo_attn.nn",
    "ModelConfigError": "yolo_attn.nn",
    "build_model": "yolo_attn.nn",
    "load_model": "yolo_attn.checkpoint",
    "train": "yolo_attn.engine.trainer",
    "TrainConfig": "yolo_attn.engine.trainer",
    "evaluate": "yolo_attn.engine.validator",
    "EvalConfig": "yolo_attn.engine.validator",
    "predict": "yolo_attn.engine.predictor",
    "load_plugin": "yolo_attn.plugins",
    "register": "yolo_attn.nn.registry",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    # Training and evaluation pull in data and COCO tooling; import them only when asked for.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'yolo_attn' has no attribute {name!r}")
