"""Build a :class:`DetectionModel` from a YOLOv5 / YOLOv7 / YOLOAir model YAML.

The schema is YOLOv5's ``parse_model``: ``backbone`` and ``head`` are lists of
``[from, number, module, args]``, scaled by ``depth_multiple`` / ``width_multiple``. Unlike
``parse_model`` there is no ``eval`` and no per-block branch: each block's registered
:class:`~yolo_attn.nn.rules.YamlRule` says how its args and channels work.

Ultralytics' YAMLs (YOLOv8, YOLO11, YOLO12) give ``scales: {n: [depth, width, max_channels], ...}``
instead; :func:`resolve_scale` turns the chosen scale into ``depth_multiple``, ``width_multiple`` and
``max_channels`` before any layer is parsed, so the layer parser reads one schema.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import torch
import yaml
from torch import nn

from yolo_attn.errors import UserError
from yolo_attn.nn.blocks.conv import default_activation
from yolo_attn.nn.heads.contract import DetectionHead
from yolo_attn.nn.model import DetectionModel, tagged
from yolo_attn.nn.registry import lookup
from yolo_attn.nn.resource_guard import ResourceGuard, ResourceLimitError, ResourceLimits, resolve_limits
from yolo_attn.nn.rules import LayerContext, Resolved
from yolo_attn.nn.summary import count_params
from yolo_attn.nn.yaml_edit import hand_edit_warning
from yolo_attn.nn.yaml_values import UnsafeValueError, parse_activation, resolve_value
from yolo_attn.utils.builtin import builtin_config, is_builtin_model
from yolo_attn.utils.yaml_io import read_yaml_mapping

LOGGER = logging.getLogger("yolo_attn.nn")
SCALE_IN_NAME = re.compile(r"yolo(?:e-)?v?\d+([nslmx])")  # Ultralytics' guess_model_scale: yolov8s -> s
STRIDE_PROBE_SIZE = 256
STRIDE_PROBE_BATCH = 2  # train-mode BatchNorm on pooled 1x1 maps (CoTAttention, ...) needs more than one image
BATCHNORM_EPS, BATCHNORM_MOMENTUM = 1e-3, 0.03


class ModelConfigError(UserError, ValueError):
    """A model YAML that cannot be built; the message names the layer and its YAML entry."""


@dataclass(frozen=True)
class LayerRecord:
    """One built layer as the model summary shows it."""

    index: int
    source: int | list[int]
    number: int
    params: int
    module: str
    args: list[Any]
    out_shape: tuple[int, ...] | None = None


def model_yaml_path(cfg: str | Path) -> Path:
    """The file a model YAML name reads: the path itself, a built-in config of that name (``yolov5s.yaml``), or,
    as in Ultralytics, for a missing ``yolov8s.yaml`` (``yolo11x-p6.yaml``, ...) the scale-free ``yolov8.yaml``
    beside it or built in (the letter in the name asked for then picks the scale)."""
    path = builtin_config(cfg, "model")
    unified = builtin_config(Path(cfg).with_name(re.sub(r"(\d+)[nslmx](.*)$", r"\1\2", Path(cfg).name)), "model")
    return unified if not path.exists() and unified.is_file() else path


def load_model_yaml(cfg: str | Path | dict[str, Any]) -> dict[str, Any]:
    """Read a model YAML file (see :func:`model_yaml_path`), or copy a dict, into a plain dict; ``yaml_file``
    keeps the name asked for."""
    if isinstance(cfg, dict):
        return copy.deepcopy(cfg)
    path = Path(cfg)
    data = read_yaml_mapping(model_yaml_path(cfg), "model YAML with backbone/head", ModelConfigError)
    data.setdefault("yaml_file", path.name)
    warning = hand_edit_warning(model_yaml_path(cfg).read_text(encoding="utf-8"), str(cfg))
    if warning:
        LOGGER.warning(warning)
    return data


def resolve_scale(d: dict[str, Any], scale: str | None = None) -> dict[str, Any]:
    """Ultralytics' compound scaling: ``scales[scale] = [depth, width, max_channels]`` -> ``depth_multiple``,
    ``width_multiple``, ``max_channels`` and ``scale`` in ``d`` (in place; returned). A YAML without ``scales``
    is left alone. The scale is ``scale``, else ``d["scale"]``, else the letter in the file name
    (``yolov8s.yaml`` -> ``s``), else the first one listed, with a warning as Ultralytics gives.
    """
    scales = d.get("scales")
    if scales is None:
        if scale:
            raise ModelConfigError(f"{_config_name(d)}scale={scale!r} given, but the YAML has no top-level 'scales'")
        return d
    rows_ok = isinstance(scales, dict) and scales and all(
        isinstance(v, list) and len(v) == 3 and all(isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0
                                                    for x in v)
        for v in scales.values()
    )
    if not rows_ok:
        raise ModelConfigError(f"{_config_name(d)}top-level 'scales' must map names to [depth, width, max_channels]")
    named = SCALE_IN_NAME.search(Path(str(d.get("yaml_file", ""))).stem)
    chosen = scale or d.get("scale") or (named.group(1) if named else None)
    if not chosen:
        chosen = next(iter(scales))
        LOGGER.warning(f"{_config_name(d)}no model scale given; assuming scale='{chosen}'")
    if chosen not in scales:
        raise ModelConfigError(f"{_config_name(d)}scale {chosen!r} is not among the YAML's scales {list(scales)}")
    depth, width, max_channels = scales[chosen]
    d.update(scale=chosen, depth_multiple=depth, width_multiple=width, max_channels=max_channels)
    return d


def _entry_text(entry: Any) -> str:
    try:
        return yaml.safe_dump(entry, default_flow_style=True, width=1 << 16).strip()
    except yaml.YAMLError:  # a dict config holding Python objects
        return repr(entry)


def _shapes(x: Any) -> Any:
    """(C, H, W) of a tensor, or of each tensor of a list, for error messages."""
    if isinstance(x, torch.Tensor):
        return tuple(x.shape[1:])
    return [_shapes(t) for t in x] if isinstance(x, (list, tuple)) else type(x).__name__


def _config_name(d: dict[str, Any]) -> str:
    """``"yolov7.yaml: "`` for a YAML read from a file, ``"model YAML: "`` for a dict."""
    return f"{d.get('yaml_file', 'model YAML')}: "


def _top_level_number(d: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    value = d.get(key, default)
    valid_type = (int,) if kind is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, valid_type) or not 0 < value < math.inf:
        raise ModelConfigError(f"{_config_name(d)}top-level {key!r} must be a positive {kind.__name__}, got {value!r}")
    return kind(value)


def _anchors_per_level(d: dict[str, Any], anchors: Any) -> int:
    """Validate ``anchors`` (absent, an int per level, or a list of ``[w, h, w, h, ...]`` per level)."""
    if anchors is None:
        return 3
    if isinstance(anchors, int) and not isinstance(anchors, bool) and anchors > 0:
        return anchors
    levels_ok = isinstance(anchors, list) and anchors and all(
        isinstance(level, list) and level and len(level) % 2 == 0 and len(level) == len(anchors[0])
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in level)
        for level in anchors
    )
    if not levels_ok:
        raise ModelConfigError(
            f"{_config_name(d)}top-level 'anchors' must be a positive int or a list of [w, h, w, h, ...] per level "
            f"with the same number of anchors each, got {anchors!r}"
        )
    return len(anchors[0]) // 2


def model_schema(d: dict[str, Any]) -> str:
    """``"ultralytics"`` for a YAML in Ultralytics' schema, else ``"yolov5"`` (YOLOv5, YOLOv7, YOLOAir).

    Decided once per model from the YAML itself: Ultralytics' YAMLs have compound ``scales`` or an anchor-free
    head line, whose args are ``[nc]`` alone (YOLOv5's heads always take ``[nc, anchors]``). Blocks registered
    for the schema (``register(schema=...)``) then take their Ultralytics meaning.
    """
    layers = d.get("head") or d.get("backbone") or []
    last = layers[-1] if isinstance(layers, list) and layers else None
    head_args = last[3] if isinstance(last, list) and len(last) == 4 else None
    anchor_free_head = isinstance(head_args, list) and len(head_args) == 1
    return "ultralytics" if "scales" in d or anchor_free_head else "yolov5"


def _check_sources(index: int, source: Any) -> list[int]:
    sources = [source] if isinstance(source, int) else source
    if not isinstance(sources, list) or not sources or not all(
        isinstance(x, int) and not isinstance(x, bool) for x in sources
    ):
        raise ValueError(f"'from' must be an int or a list of ints, got {source!r}")
    for x in sources:
        absolute = index + x if x < 0 else x
        if index == 0 and x != -1:
            raise ValueError(f"'from' {x} at layer 0: the first layer can only read the input (-1)")
        if index > 0 and not 0 <= absolute < index:
            where = "points forward or to itself" if absolute >= index else "is before layer 0"
            raise ValueError(f"'from' index {x} {where} (layers 0..{index - 1} exist)")
    return sources


def _construct(cls: type[nn.Module], resolved: Resolved) -> nn.Module:
    kwargs = getattr(resolved, "kwargs", None) or {}
    if resolved.number > 1:
        return nn.Sequential(*(cls(*resolved.args, **kwargs) for _ in range(resolved.number)))
    return cls(*resolved.args, **kwargs)


@dataclass(frozen=True)
class _ModelScales:
    """The top-level numbers every layer is resolved with."""

    nc: int
    depth: float
    width: float
    channel_multiple: int
    max_channels: float
    anchors: Any
    na: int
    schema: str
    options: dict[str, Any]


def _read_scales(d: dict[str, Any], guard: ResourceGuard) -> _ModelScales:
    """Check the top-level keys and numbers (and their resource limits) of a model dict."""
    for key in ("backbone", "head"):
        if key not in d:
            raise ModelConfigError(f"{_config_name(d)}missing the top-level key {key!r}")
        if not isinstance(d[key], list):
            raise ModelConfigError(
                f"{_config_name(d)}top-level key {key!r} must be a list of [from, number, module, args]"
            )
    if "nc" not in d:
        raise ModelConfigError(f"{_config_name(d)}missing the top-level key 'nc' (or pass nc=...)")
    scales = _ModelScales(
        nc=_top_level_number(d, "nc", int, None),
        depth=_top_level_number(d, "depth_multiple", float, 1.0),
        width=_top_level_number(d, "width_multiple", float, 1.0),
        channel_multiple=_top_level_number(d, "channel_multiple", int, 8),
        max_channels=_top_level_number(d, "max_channels", float, None) if "max_channels" in d else math.inf,
        anchors=d.get("anchors"),
        na=_anchors_per_level(d, d.get("anchors")),
        schema=model_schema(d),
        options={k: v for k, v in d.items() if k not in ("backbone", "head", "scales")},
    )
    try:
        gains = {"depth_multiple": scales.depth, "width_multiple": scales.width}
        guard.check_scales(scales.nc, gains, scales.na, len(d["backbone"]) + len(d["head"]))
    except ResourceLimitError as e:
        raise ModelConfigError(f"{_config_name(d)}{e}") from None
    return scales


def _check_entry(i: int, entry: Any) -> tuple[list[int], int, str, list[Any]]:
    """``(sources, number, module, args)`` of layer ``i``'s ``[from, number, module, args]``, each type checked."""
    if not isinstance(entry, list) or len(entry) != 4:
        raise ValueError("each layer must be [from, number, module, args]")
    source, number, module_name, args = entry
    sources = _check_sources(i, source)
    if not isinstance(number, int) or isinstance(number, bool) or number < 1:
        raise ValueError(f"'number' must be a positive int, got {number!r}")
    if not isinstance(module_name, str):
        raise ValueError(f"'module' must be a block name, got {module_name!r}")
    if not isinstance(args, list):
        raise ValueError(f"'args' must be a list, got {args!r}")
    return sources, number, module_name, args


def _build_layer(i: int, entry: Any, scales: _ModelScales, context: tuple[Any, ...], guard: ResourceGuard):
    """(block, resolved, spec, class) of layer ``i``; ``context`` = (input channels, earlier classes, scale)."""
    c_in, earlier, scale = context
    sources, number, module_name, args = _check_entry(i, entry)
    spec = lookup(module_name, scales.schema)
    if "anchors" in args and scales.anchors is None:
        raise ValueError("uses 'anchors' but the YAML has no top-level 'anchors'")
    values = [resolve_value(a, {"nc": scales.nc, "anchors": scales.anchors}) for a in args]
    ctx = LayerContext(
        index=i, c_in=c_in, number=max(round(number * scales.depth), 1) if number > 1 else number,
        width_multiple=scales.width, channel_multiple=scales.channel_multiple, nc=scales.nc,
        num_outputs=scales.na * (scales.nc + 5), max_channels=scales.max_channels, scale=scale, earlier=earlier,
        schema=scales.schema, options=scales.options,
    )
    resolved = spec.rule.resolve(values, ctx)
    cls = resolved.block or spec.cls
    try:
        block = guard.construct(lambda: _construct(cls, resolved), resolved.number)
    except TypeError as e:
        raise ValueError(f"wrong arguments for {spec.name} (YAML signature {spec.rule.signature}): {e}") from None
    return block, resolved, spec, cls


def parse_layers(
    d: dict[str, Any], ch: int, guard: ResourceGuard | None = None
) -> tuple[nn.Sequential, list[int], list[LayerRecord]]:
    """Turn the ``backbone + head`` entries of a model dict into layers, the save list and records.

    ``guard`` (default: the limits of :meth:`ResourceLimits.from_env`) refuses a layer before it allocates.
    """
    guard = guard or ResourceGuard(ResourceLimits.from_env())
    scales = _read_scales(d, guard)
    layers: list[nn.Module] = []
    records: list[LayerRecord] = []
    save: list[int] = []
    out_channels: list[int] = []
    built_classes: list[type] = []
    for i, entry in enumerate(d["backbone"] + d["head"]):
        where = f"{_config_name(d)}layer {i} {_entry_text(entry)}"
        try:
            sources = _check_sources(i, entry[0]) if isinstance(entry, list) and entry else []
            c_in = tuple(ch if i == 0 else out_channels[x] for x in sources)
            context = (c_in, tuple(built_classes), d.get("scale"))
            block, resolved, spec, cls = _build_layer(i, entry, scales, context, guard)
        except KeyError as e:
            raise ModelConfigError(f"{where}: {e.args[0]}") from None
        except (ValueError, TypeError, ArithmeticError, IndexError, AssertionError, RuntimeError) as e:
            raise ModelConfigError(f"{where}: {e}") from None
        except Exception as e:  # noqa: BLE001 - a block's constructor failing otherwise; the cause is kept
            raise ModelConfigError(f"{where}: {type(e).__name__} while building: {e}") from e
        source, number = entry[0], entry[1]
        block.i, block.f, block.type, block.np = i, source, spec.name, count_params(block)
        save.extend(x % i for x in sources if x != -1)
        layers.append(block)
        records.append(LayerRecord(i, source, number, block.np, spec.name, resolved.args))
        out_channels.append(resolved.c_out)
        built_classes.append(cls)
    return nn.Sequential(*layers), sorted(set(save)), records


def _trace_error(where: str, x: Any, e: Exception) -> ModelConfigError:
    """The error for the layer at ``where`` failing on input ``x``; an unexpected kind of ``e`` is its cause."""
    if isinstance(e, ResourceLimitError):
        return ModelConfigError(f"{where}: {e}")
    if isinstance(e, (RuntimeError, ValueError, IndexError, TypeError, AssertionError, ArithmeticError)):
        return ModelConfigError(f"{where}: shape mismatch while tracing with input (C, H, W) {_shapes(x)}: {e}")
    error = ModelConfigError(f"{where}: {type(e).__name__} while tracing with input (C, H, W) {_shapes(x)}: {e}")
    error.__cause__ = e
    return error


def trace_shapes(
    model: DetectionModel, x: torch.Tensor, records: list[LayerRecord], guard: ResourceGuard | None = None
) -> tuple[Any, list[LayerRecord]]:
    """Run ``x`` layer by layer; a failing layer raises ModelConfigError naming it. Returns output and records.

    ``guard`` (the one that built the layers) dry-runs each layer first and refuses one whose probe would not fit.
    """
    outputs: list[Any] = []
    traced = []
    entries = model.yaml["backbone"] + model.yaml["head"]
    y: Any = x
    for m, record in zip(map(tagged, model.model), records, strict=True):
        if m.f != -1:
            y = outputs[m.f] if isinstance(m.f, int) else [y if j == -1 else outputs[j] for j in m.f]
        try:
            if guard is not None:
                guard.check_forward(m.i, y)
            y = m(y)
        except Exception as e:  # noqa: BLE001 - every failure names the layer; unexpected ones keep their cause
            error = _trace_error(f"{_config_name(model.yaml)}layer {m.i} {_entry_text(entries[m.i])}", y, e)
            raise error from error.__cause__
        outputs.append(y)
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else None
        traced.append(LayerRecord(**{**record.__dict__, "out_shape": shape}))
    return y, traced


def _probe_levels(out: Any, nl: int) -> list[torch.Tensor]:
    """The per-level maps of a head's training output: its first ``nl`` tensors, or, for a head whose training
    output maps branch names to per-level maps (end-to-end heads: one-to-many and one-to-one), its first branch's."""
    if isinstance(out, Mapping):
        out = next(iter(out.values()))
    return list(out[:nl])


def build_model(
    cfg: str | Path | dict[str, Any],
    nc: int | None = None,
    ch: int = 3,
    anchors: Any = None,
    scale: str | None = None,
    limits: ResourceLimits | None | Literal["env"] = "env",
) -> DetectionModel:
    """Build a model from a YAML path or dict; ``nc``/``anchors``/``scale`` override the YAML's values
    (``scale``: a key of an Ultralytics YAML's ``scales``, see :func:`resolve_scale`).

    Strides come from a forward pass; anchors end up in stride units (order checked) and the
    detection biases get YOLOv5's priors. ``model.layer_records`` holds the summary rows.

    ``limits`` bounds what the build may cost (:class:`~yolo_attn.nn.resource_guard.ResourceLimits`:
    1 G parameters, 4 GiB and 0.5 TFLOPs of stride probe, ...); a layer over a limit raises
    ModelConfigError before it allocates. ``"env"``: the defaults, with ``$YOLO_ATTN_MAX_PARAMS`` as
    the parameter limit (``none`` lifts every limit); ``None``: no limit.
    """
    d = load_model_yaml(cfg)
    if nc is not None:
        d["nc"] = int(nc)
    if anchors is not None:
        d["anchors"] = anchors
    builtin = is_builtin_model(d)
    resolve_scale(d, scale)
    ch = _top_level_number(d, "ch", int, d.setdefault("ch", ch))
    guard = ResourceGuard(resolve_limits(limits))
    probe_shape = (STRIDE_PROBE_BATCH, ch, STRIDE_PROBE_SIZE, STRIDE_PROBE_SIZE)
    try:
        guard.check_input(probe_shape)
    except ResourceLimitError as e:
        raise ModelConfigError(f"{_config_name(d)}top-level 'ch': {e}") from None
    activation = d.get("activation")
    try:
        act_context = default_activation(parse_activation(activation)) if activation else contextlib.nullcontext()
    except UnsafeValueError as e:
        raise ModelConfigError(f"{_config_name(d)}top-level 'activation': {e}") from None
    with act_context:
        layers, save, records = parse_layers(d, ch, guard)
    model = DetectionModel(layers, save, d)
    model.train()
    with torch.no_grad():
        # A shipped config's probe is known to fit: no dry run (which imports torch._dynamo, 2.3 s).
        out, model.layer_records = trace_shapes(model, torch.zeros(probe_shape), records, None if builtin else guard)
    if callable(getattr(model.head, "bind_strides", None)):
        head = cast(DetectionHead, model.head)  # a head that binds strides has the contract's nl and stride
        levels = _probe_levels(out, head.nl)
        stride = torch.tensor([STRIDE_PROBE_SIZE / o.shape[-3 if o.dim() == 5 else -2] for o in levels])
        head.bind_strides(stride)
        model.stride = head.stride
    # YOLOv5/YOLOv7 initialize_weights(), after the stride probe as there; attention blocks' norms too.
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps, m.momentum = BATCHNORM_EPS, BATCHNORM_MOMENTUM
    return model
