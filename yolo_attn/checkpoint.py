"""Checkpoints: our plain-dict format, and safe import of official YOLOv5 / YOLOv7 ``.pt`` files.

Our checkpoint is a dict of plain values and tensors that ``torch.load(..., weights_only=True)``
reads. Upstream checkpoints are pickles of YOLOv5/YOLOv7 classes (``models.yolo.Model``, ...);
they are read with :class:`RestrictedUnpickler`, which rebuilds tensors and plain containers,
turns every other class into an inert :class:`UpstreamRecord` of its pickled state and refuses
any other callable. Nothing in the file is executed. The record's ``yaml`` dict then builds our
model and its weights load with a strict key match. :func:`load_model` is the one entry point.
"""

from __future__ import annotations

import _compat_pickle
import argparse
import codecs
import collections
import datetime
import os
import pickle
import tempfile
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from yolo_attn import __version__
from yolo_attn.errors import UserError
from yolo_attn.nn.builder import build_model
from yolo_attn.nn.model import DetectionModel
from yolo_attn.nn.registry import lookup

CHECKPOINT_FIELDS = ("model_yaml", "names", "state_dict")


class UnsafeCheckpointError(UserError):
    """A pickle that asks to call something outside the allow-list (e.g. ``os.system``)."""


@dataclass
class LoadedModel:
    """A model ready for inference with the checkpoint it came from."""

    model: DetectionModel
    names: list[str]
    checkpoint: dict
    source: str  # "yolo-attn" | "yolov5" | "yolov7"


# ---------------------------------------------------------------------------------------------
# Restricted unpickling of upstream checkpoints
# ---------------------------------------------------------------------------------------------


class UpstreamRecord:
    """Inert stand-in for an upstream object (a module, ...): keeps its constructor args and state."""

    upstream_class = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> UpstreamRecord:
        record = super().__new__(cls)
        record.args, record.state = args, {}
        return record

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<record of {self.upstream_class}>"


_record_classes: dict[str, type[UpstreamRecord]] = {}


def _record_class(module: str, name: str) -> type[UpstreamRecord]:
    qualified = f"{module}.{name}"
    if qualified not in _record_classes:
        _record_classes[qualified] = type(name, (UpstreamRecord,), {"upstream_class": qualified})
    return _record_classes[qualified]


try:  # numpy >= 2 moved the pickled helpers to numpy._core; numpy.core still names them in old pickles
    from numpy._core import multiarray as _multiarray
except ImportError:
    from numpy.core import multiarray as _multiarray

_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    ("torch._tensor", "_rebuild_from_type_v2"): torch._tensor._rebuild_from_type_v2,
    ("torch.nn.parameter", "Parameter"): nn.Parameter,
    ("torch", "Tensor"): torch.Tensor,
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    ("torch", "UntypedStorage"): torch.UntypedStorage,
    # numpy scalars and arrays (``best_fitness`` of training checkpoints); protocol 2 writes their bytes via encode
    ("_codecs", "encode"): codecs.encode,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    **{(module, name): getattr(_multiarray, name)
       for module in ("numpy.core.multiarray", "numpy._core.multiarray") for name in ("_reconstruct", "scalar")},
}
# Packages whose globals are never turned into records: asking for anything there is refused.
_REFUSED_PACKAGES = frozenset({
    "builtins", "os", "posix", "nt", "sys", "subprocess", "shutil", "importlib", "runpy", "pickle",
    "_pickle", "marshal", "ctypes", "code", "codeop", "types", "functools", "operator", "io", "_io", "pty", "socket",
    "multiprocessing", "threading", "signal", "copyreg", "webbrowser", "inspect", "pdb", "timeit",
    "numpy", "torch._C", "torch.hub", "torch.serialization", "torch.ops",
})


def _refused_package(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in _REFUSED_PACKAGES)


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that imports nothing: allow-listed tensor rebuilds and containers, records for classes.

    A global named like a class (``models.yolo.Model``, ``torch.nn.modules.conv.Conv2d``) becomes an
    :class:`UpstreamRecord` subclass; a function or anything from a system package is refused.
    """

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names (protocol < 3 pickles): __builtin__ -> builtins, commands -> subprocess, ...
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        allowed = _ALLOWED_GLOBALS.get((module, name))
        if allowed is not None:
            return allowed
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if name.isidentifier() and name[0].isupper() and not _refused_package(module):
            return _record_class(module, name)
        raise UnsafeCheckpointError(
            f"the pickle asks for {module}.{name}, which is not allowed (only tensors, plain containers and "
            f"inert records of classes are); refusing to load it"
        )


def _restricted_load(file: Any, **kwargs: Any) -> Any:
    return RestrictedUnpickler(file, **kwargs).load()


# ``torch.load`` needs a module-like object with ``Unpickler`` and ``load``.
restricted_pickle = types.SimpleNamespace(__name__="yolo_attn_restricted_pickle", Unpickler=RestrictedUnpickler,
                                          load=_restricted_load)


# ---------------------------------------------------------------------------------------------
# Our checkpoint format
# ---------------------------------------------------------------------------------------------


def _plain(value: Any, where: str) -> Any:
    """Copy ``value`` keeping only what ``weights_only`` loading accepts; paths and Namespaces are converted."""
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value.detach().cpu().clone() if isinstance(value, torch.Tensor) else value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, argparse.Namespace):
        value = vars(value)
    if isinstance(value, Mapping):
        return {k if isinstance(k, (str, int)) else str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        copied = [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return copied if isinstance(value, list) else tuple(copied)
    raise TypeError(f"checkpoint field {where} holds a {type(value).__name__}; only plain values and tensors may")


def _state_dict(source: Any) -> dict[str, Any] | None:
    """``state_dict()`` of a module/optimizer/scaler (or a dict given as is), copied to plain values."""
    if source is None:
        return None
    state = source if isinstance(source, Mapping) else source.state_dict()
    return _plain(state, "state_dict")


def batchnorm_settings(model: nn.Module) -> dict[str, list[float | None]]:
    """``{module name: [eps, momentum]}`` of every BatchNorm (not in the state dict; YOLOv5 uses 1e-3, 0.03)."""
    return {name: [m.eps, m.momentum] for name, m in model.named_modules() if isinstance(m, _BatchNorm)}


def apply_batchnorm_settings(model: nn.Module, settings: Mapping[str, list[float | None]] | None) -> None:
    """Restore what :func:`batchnorm_settings` recorded (checkpoint field ``batchnorm``) onto a rebuilt model."""
    for name, m in model.named_modules():
        if isinstance(m, _BatchNorm) and name in (settings or {}):
            m.eps, m.momentum = settings[name]


def _unwrap(model: nn.Module) -> nn.Module:
    """The model inside DataParallel / DistributedDataParallel."""
    return model.module if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)) else model


def make_checkpoint(
    model: nn.Module,
    *,
    names: list[str],
    ema: Any = None,
    optimizer: Any = None,
    scaler: Any = None,
    epoch: int = -1,
    best_fitness: float | None = None,
    hyp: dict | None = None,
    train_args: Any = None,
    extra: dict | None = None,
) -> dict:
    """Our checkpoint: a plain dict (model YAML, names, state dicts, training state, version, date).

    ``ema`` is a module, an EMA holder with ``.ema`` and ``.updates`` (YOLOv5's ``ModelEMA``), or None.
    """
    model = _unwrap(model)
    ema_module = getattr(ema, "ema", ema)
    checkpoint = {
        "model_yaml": _plain(model.yaml, "model_yaml"),
        "names": [str(n) for n in names],
        "state_dict": _state_dict(model),
        "batchnorm": batchnorm_settings(model),
        "ema": _state_dict(_unwrap(ema_module)) if ema_module is not None else None,
        "ema_updates": int(getattr(ema, "updates", 0)),
        "optimizer": _state_dict(optimizer),
        "scaler": _state_dict(scaler),
        "epoch": int(epoch),
        "best_fitness": None if best_fitness is None else float(best_fitness),
        "hyp": _plain(hyp, "hyp"),
        "train_args": _plain(train_args, "train_args"),
        "version": __version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
    }
    for key, value in (extra or {}).items():
        if key in checkpoint:
            raise ValueError(f"extra checkpoint field {key!r} would overwrite a standard field")
        checkpoint[key] = _plain(value, key)
    return checkpoint


def save_checkpoint(path: str | Path, checkpoint: dict) -> None:
    """Write ``checkpoint`` atomically: a temporary file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------------------
# Reading checkpoints (ours and upstream)
# ---------------------------------------------------------------------------------------------


def _torch_load(path: Path, pickle_module: Any = None) -> Any:
    if pickle_module is None:
        return torch.load(path, map_location="cpu", weights_only=True)
    return torch.load(path, map_location="cpu", pickle_module=pickle_module, weights_only=False)


def _read(path: Path) -> tuple[Any, bool]:
    """Unpickle ``path``; returns (object, came through the restricted unpickler)."""
    if not path.is_file():
        raise UserError(f"weights file not found: {path}")
    try:
        return _torch_load(path), False
    except pickle.UnpicklingError:
        pass  # holds classes: an upstream checkpoint (or something worse), read it with the restricted unpickler
    except Exception as e:
        raise UserError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from None
    try:
        return _torch_load(path, restricted_pickle), True
    except UnsafeCheckpointError as e:
        raise UnsafeCheckpointError(f"{path}: {e}") from None
    except Exception as e:
        raise UserError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from None


def _record_tensors(record: UpstreamRecord, prefix: str = "") -> dict[str, torch.Tensor]:
    """The state dict of a pickled ``nn.Module``: walk ``_parameters``, persistent ``_buffers`` and ``_modules``."""
    state = record.state if isinstance(record.state, dict) else {}
    tensors: dict[str, torch.Tensor] = {}
    for key, value in (state.get("_parameters") or {}).items():
        if isinstance(value, torch.Tensor):
            tensors[prefix + key] = value.detach()
    non_persistent = state.get("_non_persistent_buffers_set") or set()
    for key, value in (state.get("_buffers") or {}).items():
        if isinstance(value, torch.Tensor) and key not in non_persistent:
            tensors[prefix + key] = value.detach()
    for key, child in (state.get("_modules") or {}).items():
        if isinstance(child, UpstreamRecord):
            tensors.update(_record_tensors(child, f"{prefix}{key}."))
    return tensors


def _record_batchnorm_settings(record: UpstreamRecord, prefix: str = "") -> dict[str, list[float | None]]:
    """:func:`batchnorm_settings` of a pickled module tree (records with BatchNorm's ``eps``/``momentum``)."""
    state = record.state if isinstance(record.state, dict) else {}
    settings = {}
    if "BatchNorm" in record.upstream_class and isinstance(state.get("eps"), float):
        settings[prefix.rstrip(".")] = [state["eps"], state.get("momentum")]
    for key, child in (state.get("_modules") or {}).items():
        if isinstance(child, UpstreamRecord):
            settings.update(_record_batchnorm_settings(child, f"{prefix}{key}."))
    return settings


def _as_float(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}


def _names_list(names: Any, nc: int) -> list[str]:
    if isinstance(names, Mapping):  # YOLOv5 >= v7.0 stores {index: name}
        names = [names[k] for k in sorted(names)]
    if isinstance(names, (list, tuple)) and len(names) == nc:
        return [str(n) for n in names]
    return [str(i) for i in range(nc)]


def _plain_dict(value: Any) -> dict | None:
    """A plain copy of ``value`` if it is a dict of plain values, else None."""
    if not isinstance(value, dict):
        return None
    try:
        return _plain(value, "")
    except TypeError:
        return None


def _first_float(value: Any) -> float | None:
    """A float, numpy scalar or one-element array (YOLOv5/YOLOv7 ``best_fitness``) as a float."""
    if isinstance(value, (float, np.generic, np.ndarray)) and np.asarray(value).size:
        return float(np.asarray(value).reshape(-1)[0])
    return None


def _upstream_source(upstream: dict, model_record: UpstreamRecord) -> str:
    """``yolov7`` or ``yolov5``: what the pickled head's namesake in our registry declares (YOLOv5 by default)."""
    if "training_results" in upstream:  # only YOLOv7's train.py writes this field
        return "yolov7"
    layers = model_record.state.get("_modules", {}).get("model")
    modules = list(layers.state.get("_modules", {}).values()) if isinstance(layers, UpstreamRecord) else []
    head_name = modules[-1].upstream_class.rsplit(".", 1)[-1] if modules else ""
    try:
        contract = getattr(lookup(head_name).cls, "contract", None)
    except KeyError:
        return "yolov5"
    return contract.upstream if contract is not None else "yolov5"


def _convert_upstream(path: Path, upstream: Any) -> dict:
    """Turn an unpickled YOLOv5/YOLOv7 checkpoint into our checkpoint dict (plain values only)."""
    if not isinstance(upstream, dict):
        raise UserError(f"{path}: not a YOLOv5/YOLOv7 checkpoint (top level is {type(upstream).__name__}, not a dict)")
    records = {key: upstream[key] for key in ("model", "ema")
               if isinstance(upstream.get(key), UpstreamRecord) and isinstance(upstream[key].state, dict)}
    if not records:
        raise UserError(f"{path}: not a YOLOv5/YOLOv7 checkpoint (no pickled model under 'model' or 'ema')")
    model_record = records.get("ema") or records["model"]  # EMA first, as YOLOv5's attempt_load
    model_yaml = _plain_dict(model_record.state.get("yaml"))
    if model_yaml is None:
        raise UserError(f"{path}: the pickled {model_record.upstream_class} has no plain 'yaml' dict to build from")
    names = _names_list(model_record.state.get("names"), int(model_yaml.get("nc", 0)))
    source = _upstream_source(upstream, model_record)
    return {
        "model_yaml": model_yaml,
        "names": names,
        "state_dict": _as_float(_record_tensors(records.get("model") or model_record)),
        "batchnorm": _record_batchnorm_settings(model_record),
        "ema": _as_float(_record_tensors(records["ema"])) if "ema" in records else None,
        "ema_updates": upstream["updates"] if isinstance(upstream.get("updates"), int) else 0,
        "optimizer": None,
        "scaler": None,
        "epoch": int(upstream["epoch"]) if isinstance(upstream.get("epoch"), int) else -1,
        "best_fitness": _first_float(upstream.get("best_fitness")),
        "hyp": _plain_dict(model_record.state.get("hyp")),
        "train_args": _plain_dict(upstream.get("opt")),
        "version": __version__,
        "date": str(upstream.get("date") or ""),
        "upstream": source,
    }


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint as a plain dict: ours as saved, an upstream one converted to our fields (+ ``upstream``)."""
    path = Path(path)
    obj, restricted = _read(path)
    if restricted:
        return _convert_upstream(path, obj)
    missing = [k for k in CHECKPOINT_FIELDS if not isinstance(obj, dict) or k not in obj]
    if missing:
        raise UserError(f"{path}: not a yolo-attn checkpoint (missing {', '.join(missing)})")
    return obj


def resolve_device(device: str | torch.device = "cpu") -> torch.device:
    """``"cpu"``, ``"0"`` / ``"cuda:0"`` or a torch.device; a missing GPU is a UserError."""
    if isinstance(device, torch.device):
        return device
    text = str(device).strip().lower() or "cpu"
    if text.isdigit():
        text = f"cuda:{text}"
    try:
        resolved = torch.device(text)
    except RuntimeError:
        raise UserError(f"unknown device {device!r}; use cpu, 0, 1, ... or cuda:N") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device!r} requested but CUDA is not available")
    return resolved


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
    model.to(resolve_device(device))
    return LoadedModel(model=model, names=names, checkpoint=checkpoint, source=checkpoint.get("upstream", "yolo-attn"))


__all__ = [
    "LoadedModel", "RestrictedUnpickler", "UnsafeCheckpointError", "UpstreamRecord", "apply_batchnorm_settings",
    "batchnorm_settings", "load_checkpoint", "load_model", "make_checkpoint", "resolve_device", "save_checkpoint",
]
