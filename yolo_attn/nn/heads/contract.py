"""What the engine may rely on about a detection head, declared beside the head's class.

A block declares its YAML rule at ``@register(rule=...)``; a head also sets ``contract =
HeadContract(...)`` as a class attribute. Training, validation, AutoAnchor and checkpoint import
read only this and the head's public methods; they never name a head class. A head provides:

- ``nl`` (levels) and ``stride`` (pixels per cell of each level), set by ``bind_strides(stride)``,
  which the builder calls once after its stride probe;
- ``reset_grids()``: drop cached decoding grids (after anchors or strides change);
- ``export``: set by the exporter, the eval forward then returns the decoded tensor alone;
- with ``anchor_based``: ``anchors`` of shape ``(nl, na, 2)`` in stride units (AutoAnchor edits them);
- with ``end_to_end``: ``max_det``, ``agnostic`` and ``nms_free``, which :func:`configure_end_to_end` sets before
  inference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from yolo_attn.errors import UserError


class DetectionHead(Protocol):
    """A head's attributes and methods as listed above, for type checking (heads share no base class; a head module
    is typed as this by a ``cast`` where its contract is known)."""

    nl: int
    nc: int
    stride: torch.Tensor
    export: bool

    def bind_strides(self, stride: torch.Tensor) -> None: ...

    def reset_grids(self) -> None: ...


class AnchorBasedHead(DetectionHead, Protocol):
    """A head whose contract is ``anchor_based``: ``na`` anchors per level, ``anchors`` ``(nl, na, 2)``."""

    na: int
    anchors: torch.Tensor


@dataclass(frozen=True)
class HeadContract:
    """A head's promises to the engine.

    ``default_loss``: the loss ``--loss auto`` trains it with (a name in :mod:`yolo_attn.losses`);
    ``losses``: every loss that can train it; ``eval_loss``: the loss reported on validation outputs;
    ``anchor_based``: it has ``anchors`` for AutoAnchor; ``objectness``: decoded rows are
    ``(cx, cy, w, h, obj, classes...)`` rather than ``(cx, cy, w, h, classes...)``;
    ``upstream``: the project whose checkpoints carry this head (``yolov5``, ``yolov7``, ...);
    ``end_to_end``: the head can give final detections without NMS (YOLOv10's one-to-one branch, YOLO26): with
    ``nms_free`` its eval output is ``(b, max_det, 6)`` rows (x1, y1, x2, y2, score, class) best first per image,
    and the engine keeps those above its confidence threshold instead of running NMS;
    ``class_branches``: names of the head's submodules that predict the class scores (Ultralytics' MuSGD trains
    them at 3x the learning rate).
    """

    default_loss: str
    losses: tuple[str, ...]
    eval_loss: str
    anchor_based: bool = True
    objectness: bool = True
    upstream: str = "yolov5"
    end_to_end: bool = False
    class_branches: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.default_loss not in self.losses:
            raise ValueError(f"default loss {self.default_loss!r} is not among the head's losses {self.losses}")


def head_contract(head: nn.Module) -> HeadContract:
    """The contract of ``head`` (a model's last layer); a clear error when that layer is no detection head."""
    contract = getattr(type(head), "contract", None)
    if not isinstance(contract, HeadContract):
        raise UserError(
            f"the model's last layer is {type(head).__name__}, which is not a detection head "
            "(end the YAML's head with Detect, IDetect or another registered head)"
        )
    return contract


def has_objectness(model: nn.Module) -> bool:
    """Whether ``model``'s decoded rows carry an objectness column (its head's contract; True for a model
    without a declared head, as YOLOv5's layout)."""
    contract = getattr(type(getattr(model, "head", None)), "contract", None)
    return contract.objectness if isinstance(contract, HeadContract) else True


def is_end_to_end(model: nn.Module) -> bool:
    """Whether ``model``'s head declares itself end-to-end (its contract)."""
    contract = getattr(type(getattr(model, "head", None)), "contract", None)
    return isinstance(contract, HeadContract) and contract.end_to_end


def check_nms_free(model: nn.Module, nms_free: bool) -> None:
    """Refuse ``nms_free`` (``--nms-free``) for a model whose head is not end-to-end."""
    if nms_free and not is_end_to_end(model):
        head = type(getattr(model, "head", None)).__name__
        raise UserError(f"--nms-free: the model's head {head} is not end-to-end; only YOLOv10's and YOLO26's heads "
                        "give detections without NMS")


def configure_end_to_end(model: nn.Module, max_det: int, agnostic: bool = False, nms_free: bool = False) -> bool:
    """Whether ``model``'s eval output is final detections that take no NMS: its head is end-to-end (its contract)
    and ``nms_free`` asks for the one-to-one branch (Ultralytics' ``nms=False``; by default Ultralytics 8.4 runs
    NMS on the one-to-many branch, and so do we). The head is told to select ``max_det`` detections per image,
    across classes with ``agnostic``. ``nms_free`` for a head that is not end-to-end is a :class:`UserError`."""
    check_nms_free(model, nms_free)
    if not is_end_to_end(model):
        return False
    head: Any = model.head  # an end-to-end head: its contract promises these attributes
    head.max_det, head.agnostic, head.nms_free = int(max_det), bool(agnostic), bool(nms_free)
    return bool(nms_free)
