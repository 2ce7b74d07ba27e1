"""Neural-network side of yolo-attn: blocks, registry, YAML rules and the model builder."""

from yolo_attn.nn.builder import ModelConfigError, build_model
from yolo_attn.nn.model import DetectionModel
from yolo_attn.nn.registry import all_blocks, lookup, register

__all__ = ["DetectionModel", "ModelConfigError", "all_blocks", "build_model", "lookup", "register"]
