"""yolo-attn: YAML-driven YOLO model builder and trainer with an attention-block zoo."""

__version__ = "0.1.0"

from yolo_attn.nn import DetectionModel, ModelConfigError, build_model  # noqa: E402

__all__ = ["DetectionModel", "ModelConfigError", "__version__", "build_model", "evaluate"]


def __getattr__(name: str):
    # The evaluator pulls in data and COCO tooling; import it only when asked for.
    if name == "evaluate":
        from yolo_attn.engine.val import evaluate

        return evaluate
    raise AttributeError(f"module 'yolo_attn' has no attribute {name!r}")
