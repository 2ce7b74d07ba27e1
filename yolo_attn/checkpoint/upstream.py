"""Import of official YOLOv5 / YOLOv7 / Ultralytics ``.pt`` files: the records the restricted unpickler made become our
checkpoint dict (the model's ``yaml``, names, float tensors, BatchNorm settings, EMA and counters)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yolo_attn.checkpoint.schema import new_checkpoint, to_plain
from yolo_attn.checkpoint.unpickler import UpstreamRecord
from yolo_attn.errors import UserError
from yolo_attn.nn.registry import lookup


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
        return to_plain(value)
    except TypeError:
        return None


def _first_float(value: Any) -> float | None:
    """A float, numpy scalar or one-element array (YOLOv5/YOLOv7 ``best_fitness``) as a float."""
    if isinstance(value, (float, np.generic, np.ndarray)) and np.asarray(value).size:
        return float(np.asarray(value).reshape(-1)[0])
    return None


def _upstream_source(upstream: dict, model_record: UpstreamRecord) -> str:
    """``ultralytics`` for a pickle of Ultralytics' classes, else ``yolov7`` or ``yolov5``: what the pickled
    head's namesake in our registry declares (YOLOv5 by default)."""
    if model_record.upstream_class.startswith("ultralytics."):
        return "ultralytics"
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


def convert_upstream(path: Path, upstream: Any) -> dict:
    """Turn an unpickled YOLOv5 / YOLOv7 / Ultralytics checkpoint into our checkpoint dict (plain values only)."""
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
    updates = upstream["updates"] if isinstance(upstream.get("updates"), int) else 0
    return new_checkpoint(
        source=_upstream_source(upstream, model_record),
        model_yaml=model_yaml,
        names=_names_list(model_record.state.get("names"), int(model_yaml.get("nc", 0))),
        state_dict=_as_float(_record_tensors(records.get("model") or model_record)),
        batchnorm=_record_batchnorm_settings(model_record),
        ema=_as_float(_record_tensors(records["ema"])) if "ema" in records else None,
        training={"ema_updates": updates},
        epoch=int(upstream["epoch"]) if isinstance(upstream.get("epoch"), int) else -1,
        best_fitness=_first_float(upstream.get("best_fitness")),
        hyp=_plain_dict(model_record.state.get("hyp")),
        train_args=_plain_dict(upstream.get("opt") or upstream.get("train_args")),
        date=str(upstream.get("date") or ""),
    )
