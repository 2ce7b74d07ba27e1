"""Determinism you can ask for and check: ``torch.use_deterministic_algorithms(True)`` in full (not ``warn_only``,
which lets non-deterministic kernels pass with a warning), and the layer that would break it.

PyTorch refuses an op without a deterministic kernel on the current device only when it runs, deep inside the
model's forward or backward pass, with no hint of the block that called it (PyTorch documentation,
"Reproducibility"; ``torch.use_deterministic_algorithms``). :func:`layer_determinism` runs the model once under the
flag, layer by layer (each layer's forward and backward pass on its own input), and names the layer and the op;
:func:`op_without_deterministic_kernel` does the same for any callable (one block on its own).
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

from yolo_attn.errors import UserError
from yolo_attn.nn.model import DetectionModel
from yolo_attn.utils.torch_utils import tensors_in, unwrap_model

CUBLAS_WORKSPACE = ":4096:8"  # what deterministic cuBLAS needs (CUDA >= 10.2; PyTorch's "Reproducibility" notes)
_REFUSAL = re.compile(r"(\S+) does not have a deterministic implementation")


def set_cublas_workspace() -> None:
    """The cuBLAS workspace setting deterministic matrix products need, unless set already; it must be in place
    before the process first uses cuBLAS (so before the model is built on a GPU)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool = True) -> Iterator[None]:
    """``torch.use_deterministic_algorithms(enabled)`` in full, cuDNN's deterministic mode with it, and the
    cuBLAS workspace setting; the previous settings restored on exit."""
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
                torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    if enabled:
        set_cublas_workspace()
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    torch.use_deterministic_algorithms(enabled, warn_only=False)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = previous[2], previous[3]


def refused_op(error: BaseException) -> str | None:
    """The op a "does not have a deterministic implementation" error names (None for any other error)."""
    match = _REFUSAL.search(str(error))
    return match.group(1) if match else None


def _backward(output: object) -> None:
    """Back-propagate the sum of every tensor of ``output`` that needs a gradient."""
    parts = [t.float().sum() for t in tensors_in(output) if t.requires_grad]
    if parts:
        torch.stack(parts).sum().backward()


def op_without_deterministic_kernel(run: Callable[[], object]) -> str | None:
    """Call ``run`` (a forward pass; what it returns is back-propagated) under the full deterministic flag; the
    op PyTorch refuses for want of a deterministic kernel on this device, or None when none is refused."""
    with deterministic_algorithms(True):
        try:
            _backward(run())
        except RuntimeError as e:
            op = refused_op(e)
            if op is None:
                raise
            return op
    return None


@dataclass(frozen=True)
class LayerDeterminism:
    """One layer's check: its index, YAML block name and the op without a deterministic kernel (None: none)."""

    index: int
    block: str
    op: str | None

    @property
    def deterministic(self) -> bool:
        return self.op is None


def _detached(value: object) -> object:
    """``value`` cut from the graph; floating-point tensors require a gradient again (so a layer's backward pass
    reaches its input)."""
    if isinstance(value, torch.Tensor):
        return value.detach().requires_grad_(value.is_floating_point())
    if isinstance(value, (list, tuple)):
        return type(value)(_detached(v) for v in value)
    return value


def _run_layer(layer: nn.Module, inputs: object) -> tuple[object, str | None]:
    """(``layer``'s output, the op it was refused) under the deterministic flag; a refused layer's output comes
    from a run without the flag."""
    outputs: list[object] = []

    def forward() -> object:
        outputs.append(layer(inputs))
        return outputs[-1]

    op = op_without_deterministic_kernel(forward)
    if op is not None:
        with torch.no_grad():
            return layer(inputs), op
    return outputs[-1], None


def layer_determinism(model: nn.Module, images: torch.Tensor) -> list[LayerDeterminism]:
    """Each layer of ``model`` (a :class:`~yolo_attn.nn.model.DetectionModel`) run on ``images`` under the full
    deterministic flag, one at a time (forward and backward on its own input, routed as the model routes it), on a
    copy in ``model``'s mode (training mode: the kernels training uses). A layer that refuses still runs, without
    the flag, so that the layers after it are checked too."""
    probe = copy.deepcopy(cast(DetectionModel, unwrap_model(model)))
    report: list[LayerDeterminism] = []
    outputs: list[object] = []
    x: object = images
    layers: Any = probe.model  # an nn.Sequential whose layers carry i, f and type
    for layer in layers:
        if layer.f != -1:
            routed = layer.f
            x = outputs[routed] if isinstance(routed, int) else [x if j == -1 else outputs[j] for j in routed]
        output, op = _run_layer(layer, _detached(x))
        report.append(LayerDeterminism(layer.i, layer.type, op))
        x = _detached(output)
        outputs.append(x if layer.i in probe.save else None)
    return report


def nondeterministic_layers_error(report: Iterable[LayerDeterminism], device: torch.device) -> UserError | None:
    """The one error ``train --deterministic`` stops with when layers call ops without deterministic kernels."""
    refused = [r for r in report if not r.deterministic]
    if not refused:
        return None
    listed = "; ".join(f"layer {r.index} ({r.block}) calls {r.op}" for r in refused)
    return UserError(f"--deterministic: {listed}: no deterministic implementation on {device.type} "
                     "(torch.use_deterministic_algorithms); replace the block, or train without --deterministic")


@contextlib.contextmanager
def naming_refused_ops(where: str) -> Iterator[None]:
    """Turn PyTorch's refusal of a non-deterministic op raised inside the block into a :class:`UserError` that
    names ``where`` it ran (the layers are checked beforehand; this is for the loss and the optimizer)."""
    try:
        yield
    except RuntimeError as e:
        op = refused_op(e)
        if op is None:
            raise
        raise UserError(f"--deterministic: {op} in {where} has no deterministic implementation on this device "
                        "(torch.use_deterministic_algorithms); train without --deterministic") from None


@contextlib.contextmanager
def deterministic_training(model: nn.Module, images: torch.Tensor) -> Iterator[None]:
    """The full deterministic flag for the block, after every layer of ``model`` passed :func:`layer_determinism`
    on ``images`` (else one :class:`UserError` naming each layer that calls an op without a deterministic kernel,
    before anything trains); a refusal inside the block (loss, optimizer, validation) is named as such."""
    error = nondeterministic_layers_error(layer_determinism(model, images), images.device)
    if error is not None:
        raise error
    with deterministic_algorithms(), naming_refused_ops("the loss, the optimizer step or validation"):
        yield
