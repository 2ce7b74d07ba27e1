"""Our checkpoint: one plain dict of values and tensors that ``torch.load(..., weights_only=True)`` reads.

:data:`FIELDS` is the one definition of the schema; :func:`new_checkpoint` builds a checkpoint from
it (ours when saving, converted ones when importing YOLOv5/YOLOv7 files) and :func:`upgrade` reads
older versions. ``plugins`` records which plugin (file or module, and the sha256 of its source) provided
each block that is not built in (:func:`yolo_attn.plugins.block_provenance`). ``training`` holds
:meth:`TrainingState.state_dict` (optimizer, scheduler, scaler, EMA updates, counters, RNG); a finished run's final
checkpoints keep only its wall time (:func:`strip_optimizer`) and imported ones only the EMA update count, so only
a checkpoint whose ``training`` has an ``optimizer`` can resume.
"""

from __future__ import annotations

import argparse
import datetime
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from yolo_attn import __version__
from yolo_attn.errors import UserError
from yolo_attn.plugins import block_provenance
from yolo_attn.utils.torch_utils import unwrap_model

SCHEMA_VERSION = 3
REQUIRED = object()
FIELDS: dict[str, Any] = {
    "schema": SCHEMA_VERSION,
    "version": __version__,
    "date": "",
    "source": "yolo-attn",  # or "yolov5" / "yolov7" for an imported upstream file
    "model_yaml": REQUIRED,
    "names": REQUIRED,
    "state_dict": REQUIRED,
    "batchnorm": {},  # {module name: [eps, momentum]}: not in state dicts, YOLOv5 uses 1e-3 / 0.03
    "ema": None,  # EMA weights (used for inference when present)
    "training": None,
    "epoch": -1,
    "best_fitness": None,
    "hyp": None,
    "train_args": None,
    "plugins": {},  # {block name: {"plugin": file or module, "sha256": its source's}} for blocks of plugins (v3)
}
# Version 1 kept the training state at the top level and called ``source`` ``upstream``.
_V1_TRAINING_KEYS = ("optimizer", "scaler", "scheduler", "ema_updates", "rng", "early_stopping", "last_opt_step",
                     "wall_s")


def to_plain(value: Any, where: str = "checkpoint") -> Any:
    """Copy ``value`` keeping only what ``weights_only`` loading accepts; paths and Namespaces are converted."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, argparse.Namespace):
        value = vars(value)
    if isinstance(value, Mapping):
        return {k if isinstance(k, (str, int)) else str(k): to_plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        copied = [to_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return copied if isinstance(value, list) else tuple(copied)
    raise TypeError(f"checkpoint field {where} holds a {type(value).__name__}; only plain values and tensors may")


def new_checkpoint(**fields: Any) -> dict[str, Any]:
    """A checkpoint dict with every schema field: ``fields`` copied to plain values, the rest defaulted."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown checkpoint fields: {', '.join(sorted(unknown))}")
    missing = [k for k, v in FIELDS.items() if v is REQUIRED and k not in fields]
    if missing:
        raise ValueError(f"checkpoint fields missing: {', '.join(missing)}")
    checkpoint = {k: to_plain(fields.get(k, default), k) for k, default in FIELDS.items()}
    checkpoint["date"] = checkpoint["date"] or datetime.datetime.now(datetime.timezone.utc).isoformat()
    return checkpoint


def upgrade(checkpoint: Any, path: Path) -> dict[str, Any]:
    """``checkpoint`` as read from ``path`` in the current schema (older versions converted)."""
    if not isinstance(checkpoint, dict) or any(checkpoint.get(k) is None for k, v in FIELDS.items() if v is REQUIRED):
        present = checkpoint if isinstance(checkpoint, dict) else {}
        missing = [k for k, v in FIELDS.items() if v is REQUIRED and k not in present]
        raise UserError(f"{path}: not a yolo-attn checkpoint (missing {', '.join(missing) or 'its fields'})")
    version = checkpoint.get("schema", 1)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise UserError(f"{path}: checkpoint schema {version!r} is newer than this yolo-attn reads ({SCHEMA_VERSION})")
    if version == 1:
        old = dict(checkpoint)
        training = {k: old.pop(k) for k in _V1_TRAINING_KEYS if k in old}
        old["source"] = old.pop("upstream", "yolo-attn")
        old["training"] = training if training.get("optimizer") is not None else None
        checkpoint = old
    if version < SCHEMA_VERSION:  # fields added since (version 3: plugins) take their defaults
        checkpoint = {k: checkpoint.get(k, default) for k, default in FIELDS.items()}
        checkpoint["schema"] = SCHEMA_VERSION
    return checkpoint


def batchnorm_settings(model: nn.Module) -> dict[str, list[float | None]]:
    """``{module name: [eps, momentum]}`` of every BatchNorm."""
    return {name: [m.eps, m.momentum] for name, m in model.named_modules() if isinstance(m, _BatchNorm)}


def apply_batchnorm_settings(model: nn.Module, settings: Mapping[str, list[float | None]] | None) -> None:
    """Restore what :func:`batchnorm_settings` recorded onto a rebuilt model."""
    if settings is None:
        return
    for name, m in model.named_modules():
        if isinstance(m, _BatchNorm) and name in settings:
            eps, m.momentum = settings[name]
            if eps is not None:  # always recorded (only momentum may be None)
                m.eps = eps


def make_checkpoint(model: nn.Module, *, names: list[str], ema: nn.Module | None = None, **fields: Any) -> dict:
    """Our checkpoint of ``model`` (DDP-unwrapped), its EMA copy and any further schema ``fields``."""
    model = unwrap_model(model)
    return new_checkpoint(
        model_yaml=model.yaml, names=[str(n) for n in names], state_dict=model.state_dict(),
        batchnorm=batchnorm_settings(model), ema=unwrap_model(ema).state_dict() if ema is not None else None,
        plugins=block_provenance(model), **fields,
    )


def strip_optimizer(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The final form of a finished run's checkpoint, as YOLOv5's ``strip_optimizer`` leaves it: the EMA weights
    (else the raw ones) as ``state_dict`` in float16, no separate ``ema`` and no optimizer; ``training`` keeps only
    the run's wall time. The schema, names, YAML, epoch, hyperparameters and options stay. yolov5n: about a
    quarter of the size of a checkpoint that can resume."""
    weights = checkpoint.get("ema") or checkpoint["state_dict"]
    training = checkpoint.get("training") or {}
    return {
        **checkpoint,
        "state_dict": {k: v.half() if v.is_floating_point() else v for k, v in weights.items()},
        "ema": None,
        "training": {"wall_s": training["wall_s"]} if "wall_s" in training else None,
    }


class CheckpointWriteError(UserError):
    """A checkpoint that could not be written (a full disk, a lost mount); the file it was to replace is intact."""


def previous_checkpoint(path: str | Path) -> Path:
    """Where :func:`save_checkpoint` keeps the checkpoint it replaced: ``last.pt`` -> ``last.prev.pt``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; elsewhere folders cannot be opened and this is skipped)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_error(path: Path, error: BaseException) -> CheckpointWriteError:
    """The error to report: the operating system's (torch.save reports a failed write as a RuntimeError whose
    context is the OSError)."""
    cause = error if isinstance(error, OSError) else error.__context__ if isinstance(error.__context__, OSError) \
        else error
    return CheckpointWriteError(f"cannot write {path}: {cause}; {path.name} was left as it was")


def save_checkpoint(path: str | Path, checkpoint: dict, keep_previous: bool = False) -> None:
    """Write ``checkpoint`` atomically: a temporary file in the same folder (created with the permissions the umask
    gives, like any file the user writes; ``tempfile.mkstemp`` would make it owner-only), fsync, then rename over
    ``path`` (and fsync the folder), so that a kill at any moment leaves the old file or the new one, whole.
    ``keep_previous``: the file replaced is kept as :func:`previous_checkpoint` (``--resume`` falls back to it). A
    failed write removes the temporary file, leaves ``path`` as it was and raises :class:`CheckpointWriteError`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".*{path.suffix}.*.tmp"):  # left in the folder by saves that were killed
        stale.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        if keep_previous and path.is_file():
            os.replace(path, previous_checkpoint(path))
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, (OSError, RuntimeError)):
            raise _write_error(path, e) from None
        raise
