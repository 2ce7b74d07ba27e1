"""Reading weights files: ours, or official YOLOv5 / YOLOv7 ``.pt`` files through the restricted unpickler.
:func:`load_model` is the one entry point for every command that takes ``--weights``."""

from __future__ import annotations

import logging
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from yolo_attn.checkpoint.schema import apply_batchnorm_settings, previous_checkpoint, upgrade
from yolo_attn.checkpoint.unpickler import UnsafeCheckpointError, restricted_pickle
from yolo_attn.checkpoint.upstream import convert_upstream
from yolo_attn.errors import UserError
from yolo_attn.nn.builder import build_model
from yolo_attn.nn.model import DetectionModel
from yolo_attn.plugins import check_provenance
from yolo_attn.utils.device import select_device

LOGGER = logging.getLogger(__name__)

ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since PyTorch 1.6 (upstream YOLOv5/YOLOv7 files too)
PICKLE_MAGIC = b"\x80"  # a bare pickle stream (PyTorch's legacy format) starts with its PROTO opcode
ZERO_PROBE_BYTES = 1 << 20  # a file whose first MiB is all zeros is taken as zero-filled


class DamagedCheckpointError(UserError):
    """A weights file that is missing or cannot be a checkpoint (empty, zero-filled, truncated, garbage)."""


@dataclass
class LoadedModel:
    """A model ready for inference with the checkpoint it came from."""

    model: DetectionModel
    names: list[str]
    checkpoint: dict
    source: str  # "yolo-attn" | "yolov5" | "yolov7"


def _torch_load(path: Path, pickle_module: Any = None) -> Any:
    if pickle_module is None:
        return torch.load(path, map_location="cpu", weights_only=True)
    return torch.load(path, map_location="cpu", pickle_module=pickle_module, weights_only=False)


def damage(path: Path) -> str | None:
    """Why ``path`` cannot be a checkpoint, found from its bytes before unpickling (None: it may be one)."""
    size = path.stat().st_size
    if size == 0:
        return "the file is empty (0 bytes)"
    with open(path, "rb") as f:
        head = f.read(ZERO_PROBE_BYTES)
    if head.startswith(ZIP_MAGIC):
        return None if zipfile.is_zipfile(path) else (
            f"truncated: a zip archive of {size} bytes without its end record (an interrupted write or copy)")
    if not head.strip(b"\0"):
        return (f"zero-filled: its first {min(size, ZERO_PROBE_BYTES)} bytes are all 0 (a write that never reached "
                "the disk)")
    if not head.startswith(PICKLE_MAGIC):
        return f"neither a zip archive nor a pickle (starts with {head[:8]!r})"
    return None


def _read(path: Path) -> tuple[Any, bool]:
    """Unpickle ``path``; returns (object, came through the restricted unpickler)."""
    if not path.is_file():
        raise DamagedCheckpointError(f"weights file not found: {path}")
    problem = damage(path)
    if problem:
        raise DamagedCheckpointError(f"{path}: not a readable PyTorch checkpoint: {problem}")
    try:
        return _torch_load(path), False
    except pickle.UnpicklingError:
        pass  # holds classes: an upstream checkpoint (or something worse), read it with the restricted unpickler
    except Exception as e:
        raise DamagedCheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from None
    try:
        return _torch_load(path, restricted_pickle), True
    except UnsafeCheckpointError as e:
        raise UnsafeCheckpointError(f"{path}: {e}") from None
    except Exception as e:
        raise DamagedCheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from None


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint as a plain dict in the current schema: ours as saved (older versions upgraded),
    an upstream one converted (``source`` names it). Ours is refused when a plugin that provided one of its
    blocks is not loaded (:func:`~yolo_attn.plugins.check_provenance`; nothing it names is imported)."""
    path = Path(path)
    obj, restricted = _read(path)
    if restricted:
        return convert_upstream(path, obj)
    checkpoint = upgrade(obj, path)
    check_provenance(checkpoint["plugins"] or {}, str(path))
    return checkpoint


def load_for_resume(path: str | Path) -> tuple[dict, Path]:
    """(checkpoint, the file it came from) to resume ``path``: when ``path`` is missing or damaged (a crash during a
    copy, a disk fault), the previous checkpoint saved beside it, with a warning; an unsafe or foreign file is
    never passed over."""
    path = Path(path)
    try:
        return load_checkpoint(path), path
    except DamagedCheckpointError as e:
        previous = previous_checkpoint(path)
        if not previous.is_file():
            raise
        checkpoint = load_checkpoint(previous)
        LOGGER.warning(f"{e}; resuming from the previous checkpoint {previous} "
                       f"(saved after epoch {checkpoint['epoch'] + 1})")
        return checkpoint, previous


def resume_candidates(project: Path) -> list[Path]:
    """The ``*/weights/last.pt`` of the runs under ``project``, oldest first (a run whose last.pt is missing but
    whose last.prev.pt exists counts, by that file's time)."""
    found = {p: p for p in project.glob("*/weights/last.pt")}
    for previous in project.glob("*/weights/last.prev.pt"):
        found.setdefault(previous.with_name("last.pt"), previous)
    return sorted(found, key=lambda last: found[last].stat().st_mtime)


def _preview(keys: set[str], limit: int = 8) -> str:
    ordered = sorted(keys)
    return ", ".join(ordered[:limit]) + (f" (+{len(ordered) - limit} more)" if len(ordered) > limit else "") or "none"


def _load_weights(model: DetectionModel, state_dict: dict[str, torch.Tensor], path: Path) -> None:
    """Strict load; a checkpoint stored fused (Conv without BN) loads into the fused model."""
    expected = set(model.state_dict())
    if set(state_dict) != expected:
        model.fuse()
        if set(state_dict) != set(model.state_dict()):
            raise UserError(
                f"{path}: weights do not match the model built from its YAML: missing "
                f"{_preview(expected - set(state_dict))}, unexpected {_preview(set(state_dict) - expected)}"
            )
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as e:
        raise UserError(f"{path}: weights do not fit the model built from its YAML: {e}") from None


def load_model(path: str | Path, device: str | torch.device = "cpu", fuse: bool = False) -> LoadedModel:
    """Load any weights file (ours or an official YOLOv5/YOLOv7 ``.pt``) as a float model in eval mode.

    EMA weights are used when the checkpoint has them (as YOLOv5's ``attempt_load``).
    """
    path = Path(path)
    checkpoint = load_checkpoint(path)
    names = list(checkpoint["names"])
    model = build_model(checkpoint["model_yaml"])
    model.names = names
    apply_batchnorm_settings(model, checkpoint.get("batchnorm"))
    _load_weights(model, checkpoint.get("ema") or checkpoint["state_dict"], path)
    model = model.float().eval()
    if fuse:
        model.fuse()
    model.to(select_device(device))
    return LoadedModel(model=model, names=names, checkpoint=checkpoint, source=checkpoint["source"])
