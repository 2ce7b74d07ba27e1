"""yolo-attn: YAML-driven YOLO model builder and trainer with an attention-block zoo."""

__version__ = "0.1.0"

from yolo_attn.nn import DetectionModel, ModelConfigError, build_model  # noqa: E402

__all__ = ["DetectionModel", "ModelConfigError", "__version__", "build_model"]
