"""Losses by name. A loss class registers itself with :func:`register_loss`; a head names the losses
that can train it in its :class:`~yolo_attn.nn.heads.HeadContract`, and :func:`build_loss` joins the two."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import nn

from yolo_attn.errors import UserError
from yolo_attn.nn.heads import head_contract

_LOSSES: dict[str, Callable[[nn.Module, dict[str, Any]], Any]] = {}


class Loss(Protocol):
    """What :func:`build_loss` returns: called on a head's raw outputs and the targets, it gives (total * batch
    size, detached items); ``item_names`` names the items. A loss with a schedule also has ``set_epoch``."""

    item_names: tuple[str, ...]

    def __call__(self, preds: Any, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


def register_loss(name: str):
    """Class decorator: make a loss ``cls(head, hyp)`` available as ``name``. An instance is called as
    ``loss(raw_outputs, targets) -> (total * batch_size, detached items)``; ``cls.item_names`` names the items."""

    def decorate(cls):
        if name in _LOSSES and _LOSSES[name] is not cls:
            raise ValueError(f"loss {name!r} is already registered to {_LOSSES[name].__qualname__}")
        _LOSSES[name] = cls
        return cls

    return decorate


def loss_names() -> tuple[str, ...]:
    return tuple(sorted(_LOSSES))


def build_loss(head: nn.Module, hyp: dict[str, Any], name: str = "auto", *, for_eval: bool = False) -> Loss:
    """The loss ``name`` for ``head`` (``auto``: the head's default, or its eval loss with ``for_eval``)."""
    contract = head_contract(head)
    if name == "auto":
        name = contract.eval_loss if for_eval else contract.default_loss
    if name not in _LOSSES:
        raise UserError(f"unknown loss {name!r}; registered: {', '.join(loss_names())}")
    if not for_eval and name not in contract.losses:
        raise UserError(
            f"--loss {name} cannot train a {type(head).__name__} head (it trains with: {', '.join(contract.losses)})"
        )
    return _LOSSES[name](head, hyp)
