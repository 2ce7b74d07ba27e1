"""The attention-gate protocol: a block that computes a spatial or channel gate can hand it out.

A block opts in beside its class by inheriting :class:`GateRecorder` and calling
``self.record_gate("spatial" | "channel", gate)`` in ``forward`` (``gate`` broadcasts against the
features, e.g. ``(b, 1, h, w)`` or ``(b, c, 1, 1)``). Off (the default) that call is one attribute
check; a gate that costs extra work to form is computed under ``if self.gates_wanted:``.
:func:`capture_attention` turns recording on for every opted-in module of a model and collects the
gates; the builder and the registry never look at this. This module defines no block.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

GATE_KINDS = ("spatial", "channel")


@dataclass(frozen=True)
class CapturedGate:
    """One gate one block computed in one forward pass: where (``layer`` index of the model's top-level
    layer, ``path`` of the module, ``block`` its class name), ``kind`` and the detached gate."""

    layer: int | None
    path: str
    block: str
    kind: str
    gate: torch.Tensor

    def spatial_map(self) -> torch.Tensor:
        """``(b, h, w)``: the gate averaged over channels."""
        return self.gate.mean(1)

    def channel_weights(self) -> torch.Tensor:
        """``(b, c)``: the gate averaged over positions."""
        return self.gate.mean((2, 3))


class GateRecorder:
    """Mixin for attention blocks (``class CBAM(GateRecorder, nn.Module)``); adds no parameters or state."""

    _gate_sink: list[CapturedGate] | None = None  # set per instance by capture_attention
    _gate_where: tuple[int | None, str] = (None, "")

    @property
    def gates_wanted(self) -> bool:
        """True inside :func:`capture_attention`: guard gates that cost extra work to form."""
        return self._gate_sink is not None

    def record_gate(self, kind: str, gate: torch.Tensor) -> None:
        """Hand out ``gate`` when capture is on; a no-op otherwise."""
        sink = self._gate_sink
        if sink is None:
            return
        if kind not in GATE_KINDS:
            raise ValueError(f"{type(self).__name__}: gate kind must be one of {GATE_KINDS}, got {kind!r}")
        gate = gate.detach()
        if gate.ndim == 2:  # (b, c) channel weights
            gate = gate[..., None, None]
        layer, path = self._gate_where
        sink.append(CapturedGate(layer, path, type(self).__name__, kind, gate))


def gate_layers(model: nn.Module) -> dict[int, str]:
    """Top-level layer index -> class name of every layer of ``model`` (a DetectionModel) holding a gate block."""
    found: dict[int, str] = {}
    for layer in getattr(model, "model", []):
        for m in layer.modules():
            if isinstance(m, GateRecorder):
                found.setdefault(int(layer.i), type(m).__name__)
    return found


def _layer_index(model: nn.Module, path: str) -> int | None:
    parts = path.split(".")
    if len(parts) >= 2 and parts[0] == "model" and parts[1].isdigit() and hasattr(model, "model"):
        return int(parts[1])
    return None


@contextmanager
def capture_attention(model: nn.Module) -> Iterator[list[CapturedGate]]:
    """Record the gates of every :class:`GateRecorder` in ``model`` while the block runs.

    Yields the list the gates are appended to, in forward order (several forwards append in turn).
    """
    gates: list[CapturedGate] = []
    recorders = [(path, m) for path, m in model.named_modules() if isinstance(m, GateRecorder)]
    for path, m in recorders:
        m._gate_sink, m._gate_where = gates, (_layer_index(model, path), path)
    try:
        yield gates
    finally:
        for _, m in recorders:
            del m._gate_sink, m._gate_where  # back to the class defaults: recording off
