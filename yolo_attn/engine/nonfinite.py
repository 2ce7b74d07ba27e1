"""Training steps that go non-finite: skipped, counted, located, and never saved.

A NaN or infinite loss or gradient (attention gates under mixed precision are the usual source) would otherwise
be stepped into the weights, then into the EMA and every later checkpoint. :class:`NonFiniteGuard` skips that
optimizer step instead (and undoes what the step's forward pass wrote into BatchNorm statistics), counts it, and
after ``patience`` skips in a row stops the run with one message: the epoch and iteration, the first layer whose
output is non-finite (a forward re-run of the offending batch with a hook on every layer), and the last good
checkpoint, which :func:`check_finite_weights` keeps from being overwritten. Under AMP, the gradient check also
catches the overflows ``torch.amp.GradScaler`` skips on its own; the scaler still backs off as it would.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import cast

import torch
import torch.distributed as dist
from torch import nn

from yolo_attn.errors import UserError
from yolo_attn.nn.model import DetectionModel, layer_label
from yolo_attn.utils.torch_utils import tensors_in, unwrap_model

LOGGER = logging.getLogger(__name__)


class NonFiniteTrainingError(UserError):
    """Training stopped: the loss or gradients stayed non-finite, or the weights went non-finite before a save."""


def _finite(value: object) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors_in(value) if t.is_floating_point())


def _bare(model: nn.Module) -> DetectionModel:
    return cast(DetectionModel, unwrap_model(model))


def owning_layer(model: nn.Module, name: str) -> str:
    """``layer 7 (CBAM)`` for a parameter or buffer name such as ``model.7.cv1.conv.weight``."""
    parts = name.split(".")
    if len(parts) > 1 and parts[0] == "model" and parts[1].isdigit():
        return layer_label(_bare(model).model[int(parts[1])])
    return "outside the layers"


def first_nonfinite_tensor(named: Iterable[tuple[str, torch.Tensor | None]]) -> str | None:
    """The name of the first tensor with a NaN or infinity (floating-point ones; None entries skipped)."""
    for name, tensor in named:
        if tensor is not None and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None


@torch.no_grad()
def first_nonfinite_layer(model: nn.Module, images: torch.Tensor, amp: bool = False) -> str | None:
    """The first layer, in execution order, whose output has a NaN or infinity when ``model`` runs on ``images``
    (a copy of it, in its training mode and under the same autocast, so that its BatchNorm statistics stay as they
    are); None when every output is finite."""
    probe = copy.deepcopy(_bare(model))
    found: list[str] = []

    def record(layer: nn.Module, _inputs: object, output: object) -> None:
        if not found and not _finite(output):
            found.append(layer_label(layer))

    hooks = [layer.register_forward_hook(record) for layer in probe.model]
    try:
        with torch.autocast(device_type=images.device.type, enabled=amp):
            probe(images)
    except Exception as e:  # noqa: BLE001 - a layer that fails on non-finite input: the one before it is reported
        LOGGER.debug(f"re-run stopped: {type(e).__name__}: {e}")
    finally:
        for hook in hooks:
            hook.remove()
    return found[0] if found else None


def check_finite_weights(model: nn.Module, ema: nn.Module | None, epoch: int, last_good: str) -> None:
    """Raise :class:`NonFiniteTrainingError` when the weights or EMA weights about to be saved hold a NaN or
    infinity, so that they never replace the last good checkpoint."""
    for what, module in (("weights", model), ("EMA weights", ema)):
        if module is None:
            continue
        name = first_nonfinite_tensor(unwrap_model(module).state_dict().items())
        if name is not None:
            raise NonFiniteTrainingError(
                f"training stopped after epoch {epoch + 1}: the {what} are non-finite (first: {name}, "
                f"{owning_layer(model, name)}); not saved; last good checkpoint: {last_good}")


class NonFiniteGuard:
    """Skips, counts and (after ``patience`` in a row) stops on non-finite optimizer steps of ``model``.

    Per step: :meth:`before_forward` (snapshot of the BatchNorm statistics), :meth:`loss_is_finite` before the
    backward pass, :meth:`gradients_are_finite` with the clipped norm before the optimizer step, then
    :meth:`stepped` or :meth:`skip`. ``distributed``: every process takes the same decision (the loss check is
    all-reduced; gradients are already averaged). ``last_good`` names the checkpoint a stop refers to."""

    def __init__(self, model: nn.Module, patience: int, amp: bool = False, distributed: bool = False):
        self.model = unwrap_model(model)
        self.patience = max(patience, 1)
        self.amp = amp
        self.distributed = distributed
        self.buffers = list(self.model.buffers())
        self.snapshot: list[torch.Tensor] = []
        self.consecutive = 0
        self.epoch_skips = 0
        self.total_skips = 0
        self.last_good = "none saved yet"

    def saved(self, path: Path | str, epoch: int) -> None:
        """Record the last checkpoint written with finite weights."""
        self.last_good = f"{path} (epoch {epoch + 1})"

    def start_epoch(self) -> None:
        self.epoch_skips = 0

    def before_forward(self) -> None:
        """Keep the buffers (BatchNorm running statistics) a skipped step must not change."""
        self.snapshot = [b.detach().clone() for b in self.buffers]

    def loss_is_finite(self, loss: torch.Tensor) -> bool:
        finite = torch.isfinite(loss.detach()).all().to(torch.int32)
        if self.distributed:
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        return bool(finite)

    @staticmethod
    def gradients_are_finite(total_norm: torch.Tensor) -> bool:
        """From the norm ``clip_grad_norm_`` returns: infinite or NaN when any gradient is."""
        return bool(torch.isfinite(total_norm))

    def stepped(self) -> None:
        self.consecutive = 0

    @torch.no_grad()
    def skip(self, optimizer: torch.optim.Optimizer, cause: str, images: torch.Tensor, epoch: int,
             iteration: int) -> None:
        """Undo the step's buffer updates, drop its gradients, count it; stop after ``patience`` in a row.
        ``cause``: ``loss`` or ``gradient``."""
        for buffer, kept in zip(self.buffers, self.snapshot, strict=True):
            buffer.copy_(kept)
        # back-propagation runs from the last layer to the first: where it went non-finite is the last layer with a
        # non-finite gradient (every layer before it gets one too)
        gradient = first_nonfinite_tensor((n, p.grad) for n, p in reversed(list(self.model.named_parameters())))
        optimizer.zero_grad()
        self.consecutive += 1
        self.epoch_skips += 1
        self.total_skips += 1
        LOGGER.warning(f"epoch {epoch + 1} iteration {iteration}: non-finite {cause}, optimizer step skipped "
                       f"({self.consecutive} in a row, {self.epoch_skips} this epoch)")
        if self.consecutive >= self.patience:
            raise NonFiniteTrainingError(self.stop_message(cause, images, epoch, iteration, gradient))

    def stop_message(self, cause: str, images: torch.Tensor, epoch: int, iteration: int,
                     gradient: str | None) -> str:
        layer = first_nonfinite_layer(self.model, images, self.amp)
        if layer is not None:
            where = f"first non-finite layer output: {layer}"
        elif gradient is not None:
            where = (f"every layer output finite; the gradients go non-finite in {owning_layer(self.model, gradient)} "
                     f"(the last layer with a non-finite gradient: {gradient})")
        else:
            where = "every layer output finite" + (" (the loss itself goes non-finite)" if cause == "loss" else "")
        return (f"training stopped at epoch {epoch + 1}, iteration {iteration}: {self.consecutive} optimizer steps "
                f"in a row skipped for a non-finite {cause} ({self.total_skips} in all); {where}; "
                f"last good checkpoint: {self.last_good}")
