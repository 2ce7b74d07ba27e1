"""Refuse absurd models before they allocate memory or hang the build: a dry run on PyTorch's ``meta`` device.

A mutated or mistyped model YAML (``number: 1000000``, a width of ``10**9``, ``width_multiple: 1e9``)
would otherwise build for minutes or allocate tens of GB before failing. The guard checks each layer
before anything real is allocated, without knowing any block:

* the top-level scales (``nc``, ``depth_multiple``, ``width_multiple``, anchors per level, layer count);
* the layer's stacked copies, then the layer itself built on the ``meta`` device (shapes only, no
  memory) while a registration hook counts its sub-modules: its parameter count is exact;
* in the stride probe, each layer first runs on ``meta`` tensors, counting FLOPs and the largest tensor,
  so a layer whose probe would not fit is refused before it runs.

Limits (:class:`ResourceLimits`) are far above the largest real configs (yolov7-e6e, yolov5x6: about
170 M parameters). ``build_model(..., limits=None)`` or ``YOLO_ATTN_MAX_PARAMS=none`` lifts them all;
``YOLO_ATTN_MAX_PARAMS=N`` sets the parameter limit.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves, tree_map
from torch.utils.flop_counter import flop_registry

from yolo_attn.errors import UserError

ENV_MAX_PARAMS = "YOLO_ATTN_MAX_PARAMS"
LIFT_HINT = f"pass limits=None to build_model or set {ENV_MAX_PARAMS}=none to lift the resource limits"


class ResourceLimitError(ValueError):
    """A model (or one layer of it) above a :class:`ResourceLimits` limit; the builder adds the layer."""


@dataclass(frozen=True)
class ResourceLimits:
    """What one model build may cost; each limit is far above every real config."""

    params: int = 1_000_000_000  # parameters of the whole model (4 GB in float32)
    probe_bytes: int = 4 * 2**30  # stride probe: the outputs it keeps plus the largest tensor of a layer
    probe_flops: int = 5 * 10**11  # stride probe FLOPs (yolov5x: 66 G, yolov7-e6: 47 G); seconds on a CPU
    modules: int = 5_000  # sub-modules of the whole model (yolov5x: 565, yolov7-e6: 643); bounds the build time
    layers: int = 10_000  # YAML layers (yolov7-e6: 140)
    nc: int = 100_000  # classes
    anchors: int = 1_000  # anchors per level
    gain: float = 1_000.0  # depth_multiple and width_multiple

    @classmethod
    def from_env(cls) -> ResourceLimits | None:
        """The defaults, with ``$YOLO_ATTN_MAX_PARAMS`` as the parameter limit ('none' lifts every limit)."""
        value = os.environ.get(ENV_MAX_PARAMS, "").strip()
        if not value:
            return cls()
        if value.lower() in ("none", "off", "unlimited"):
            return None
        try:
            params = float(value)
        except ValueError:
            params = math.nan
        if not math.isfinite(params) or params < 1:
            raise UserError(f"${ENV_MAX_PARAMS} must be a positive number of parameters or 'none', got {value!r}")
        return cls(params=int(params))


def resolve_limits(limits: ResourceLimits | None | Literal["env"]) -> ResourceLimits | None:
    """``"env"``: :meth:`ResourceLimits.from_env`; otherwise ``limits`` itself (None: no limit)."""
    return ResourceLimits.from_env() if limits == "env" else limits


def _bytes(tensors: Any) -> int:
    return sum(t.numel() * t.element_size() for t in tree_leaves(tensors) if isinstance(t, torch.Tensor))


class _ProbeCost(TorchDispatchMode):
    """Counts the FLOPs of convolutions and matrix products (PyTorch's flop formulas) and records the
    size in bytes of the largest tensor any op returns; raises as soon as either passes its budget, so
    that a chain of ops growing a tensor (1,000 stacked ``nn.Upsample``) stops before sizes overflow."""

    def __init__(self, max_flops: float, max_bytes: float) -> None:
        super().__init__()
        self.flops = self.largest = 0
        self.max_flops, self.max_bytes = max_flops, max_bytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.flops += formula(*args, **kwargs, out_val=out)
        self.largest = max(self.largest, max((_bytes(t) for t in tree_leaves(out)), default=0))
        _limit(self.flops, self.max_flops, f"the stride probe's FLOPs in this layer ({self.flops:,})")
        _limit(self.largest, self.max_bytes, f"a tensor of {self.largest:,} bytes in the stride probe")
        return out


def _without_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with its BatchNorms, which keep shapes but run slowly on ``meta``, replaced by Identity."""
    for name, child in module.named_children():
        if isinstance(child, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
            setattr(module, name, nn.Identity())
        else:
            _without_batchnorm(child)
    return module


@contextlib.contextmanager
def _module_budget(budget: int) -> Iterator[list[int]]:
    """Count sub-module registrations; raise once more than ``budget`` are made (a runaway constructor)."""
    count = [0]

    def hook(module: nn.Module, name: str, submodule: nn.Module | None) -> None:
        count[0] += 1
        if count[0] > budget:
            raise ResourceLimitError(f"refused while building: more than {budget:,} sub-modules; {LIFT_HINT}")

    handle = nn.modules.module.register_module_module_registration_hook(hook)
    try:
        yield count
    finally:
        handle.remove()


def _limit(value: float, limit: float, what: str) -> None:
    if not value <= limit:
        raise ResourceLimitError(f"{what} is above the limit of {limit:,}; {LIFT_HINT}")


class ResourceGuard:
    """Running totals of one build, checked against ``limits`` (None: nothing is checked)."""

    def __init__(self, limits: ResourceLimits | None):
        self.limits = limits
        self.params = self.modules = self.flops = self.kept_bytes = 0
        self.meta_layers: list[nn.Module] = []  # the meta twin of each layer built so far

    def check_scales(self, nc: int, gains: dict[str, float], anchors_per_level: int, layers: int) -> None:
        """The top-level numbers of a model YAML."""
        if self.limits is None:
            return
        _limit(nc, self.limits.nc, f"'nc' {nc:,}")
        for key, gain in gains.items():
            _limit(gain, self.limits.gain, f"{key!r} {gain:g}")
        _limit(anchors_per_level, self.limits.anchors, f"{anchors_per_level:,} anchors per level")
        _limit(layers, self.limits.layers, f"{layers:,} layers")

    def construct(self, build: Callable[[], nn.Module], copies: int) -> nn.Module:
        """``build()`` for real once its ``meta`` twin (``copies`` stacked blocks) fits the limits."""
        if self.limits is None:
            return build()
        budget = self.limits.modules - self.modules
        _limit(copies, budget, f"'number' {copies:,} (stacked copies, after {self.modules:,} sub-modules)")
        try:
            with torch.device("meta"), _module_budget(budget) as count:
                meta = build()
        except ResourceLimitError:
            raise
        except Exception:  # noqa: BLE001 - a constructor that reads tensor values cannot run on meta
            with _module_budget(budget) as count:  # built for real, still under the sub-module budget
                real = build()
            self._account(real, count[0], copies)
            return real
        self._account(meta, count[0], copies)
        return build()

    def _account(self, module: nn.Module, modules: int, copies: int) -> None:
        """Add ``module``'s parameters and sub-modules to the totals (refusing it over the limit) and keep its
        ``meta`` twin for the probe's dry run."""
        assert self.limits is not None  # construct() accounts only under limits
        params = sum(p.numel() for p in module.parameters())
        _limit(self.params + params, self.limits.params,
               f"this layer has {params:,} parameters ({self.params + params:,} up to here, "
               "counted before allocating); the total")
        self.params, self.modules = self.params + params, self.modules + modules + copies
        self.meta_layers.append(_without_batchnorm(copy.deepcopy(module).to("meta")))

    def check_input(self, shape: tuple[int, ...]) -> None:
        """The stride probe's input tensor (float32)."""
        if self.limits is not None:
            self.kept_bytes = 4 * math.prod(shape)
            what = f"the stride probe input {shape} ({self.kept_bytes:,} bytes)"
            _limit(self.kept_bytes, self.limits.probe_bytes, what)

    def check_forward(self, index: int, x: Any) -> None:
        """Dry-run layer ``index`` on ``meta`` tensors shaped like ``x``; refuse it if the probe would not fit.
        A layer whose dry run fails is left to the real run, which reports its error."""
        if self.limits is None or index >= len(self.meta_layers):
            return
        meta_x = tree_map(lambda t: t.to("meta") if isinstance(t, torch.Tensor) else t, x)
        cost = _ProbeCost(self.limits.probe_flops - self.flops, self.limits.probe_bytes - self.kept_bytes)
        try:
            with cost:
                out = self.meta_layers[index](meta_x)
        except ResourceLimitError:
            raise
        except Exception:  # noqa: BLE001 - the real run reports the layer's own error
            return
        self.flops += cost.flops
        _limit(self.flops, self.limits.probe_flops, f"the stride probe's FLOPs up to this layer ({self.flops:,})")
        kept = self.kept_bytes + _bytes(out)
        _limit(kept + cost.largest, self.limits.probe_bytes,
               f"the stride probe's memory ({kept:,} bytes of outputs, largest tensor {cost.largest:,} bytes)")
        self.kept_bytes = kept
