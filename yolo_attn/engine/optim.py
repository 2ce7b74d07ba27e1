"""Optimiser parameter groups, learning-rate schedules, warm-up, model EMA and early stopping.

Follows YOLOv5's ``train.py`` / ``utils/torch_utils.py`` recipe (Jocher et al. 2020): three parameter
groups (biases, decayed weights, normalisation weights), linear or one-cycle cosine decay to
``lr0 * lrf``, a warm-up that ramps weights up from 0 and biases down from ``warmup_bias_lr``, and an
exponential moving average of the weights with a ramped decay (Polyak averaging).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from yolo_attn.errors import UserError
from yolo_attn.nn.model import DetectionModel
from yolo_attn.utils.torch_utils import unwrap_model

NOMINAL_BATCH_SIZE = 64
OPTIMIZERS = ("SGD", "Adam", "AdamW")  # the names build_optimizer knows
BIAS_GROUP, DECAYED_GROUP, NORM_GROUP = 0, 1, 2


def freeze_layers(model: DetectionModel, freeze: tuple[int, ...] | list[int]) -> list[int]:
    """YOLOv5's ``--freeze``: one number N freezes layers 0..N-1 (10: YOLOv5's backbone; 0: nothing), several
    numbers freeze those layers. The parameters under ``model.<i>.`` stop requiring gradients (the optimizer then
    leaves them alone); returns the frozen layer indices."""
    count = len(model.model)
    layers = list(range(freeze[0])) if len(freeze) == 1 else sorted(set(freeze))
    if layers and layers[-1] >= count:
        raise UserError(f"--freeze {' '.join(map(str, freeze))}: the model has layers 0..{count - 1}")
    prefixes = tuple(f"model.{i}." for i in layers)
    for name, parameter in model.named_parameters():
        if name.startswith(prefixes):
            parameter.requires_grad_(False)
    return layers


def parameter_groups(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter], list[nn.Parameter]]:
    """Split parameters into (biases, weights to decay, normalisation-layer weights)."""
    biases, decayed, norm_weights = [], [], []
    norm_types = tuple(v for k, v in vars(nn).items() if "Norm" in k and isinstance(v, type))
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if name == "bias":
                biases.append(p)
            elif name == "weight" and isinstance(module, norm_types):
                norm_weights.append(p)
            else:
                decayed.append(p)
    return biases, decayed, norm_weights


def build_optimizer(
    model: nn.Module, name: str = "SGD", lr: float = 0.01, momentum: float = 0.937, weight_decay: float = 5e-4
) -> torch.optim.Optimizer:
    """SGD (Nesterov) or AdamW with groups [biases, weights (decayed), norm weights]; only group 1 decays."""
    biases, decayed, norm_weights = parameter_groups(model)
    if name == "SGD":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(biases, lr=lr, momentum=momentum, nesterov=True)
    elif name == "AdamW":
        optimizer = torch.optim.AdamW(biases, lr=lr, betas=(momentum, 0.999), weight_decay=0.0)
    elif name == "Adam":
        optimizer = torch.optim.Adam(biases, lr=lr, betas=(momentum, 0.999))
    else:
        raise ValueError(f"unknown optimizer {name!r} (use one of {', '.join(OPTIMIZERS)})")
    optimizer.add_param_group({"params": decayed, "weight_decay": weight_decay})
    optimizer.add_param_group({"params": norm_weights, "weight_decay": 0.0})
    return optimizer


def lr_lambda(epochs: int, lrf: float, cosine: bool = False) -> Callable[[float], float]:
    """Learning-rate multiplier per epoch: linear from 1 to ``lrf``, or one-cycle cosine from 1 to ``lrf``."""
    if cosine:
        return lambda x: ((1 - math.cos(x * math.pi / epochs)) / 2) * (lrf - 1) + 1
    return lambda x: (1 - x / epochs) * (1.0 - lrf) + lrf


def warmup_iterations(hyp: dict[str, Any], batches_per_epoch: int) -> int:
    """Warm-up length in iterations: ``warmup_epochs`` epochs but at least 100 iterations (0 disables)."""
    return max(round(hyp["warmup_epochs"] * batches_per_epoch), 100) if hyp["warmup_epochs"] > 0 else -1


def apply_warmup(
    optimizer: torch.optim.Optimizer, iteration: int, warmup_iters: int, epoch_factor: float, hyp: dict[str, Any]
) -> None:
    """Ramp lrs linearly (biases from ``warmup_bias_lr`` down, others from 0 up) and momentum up to its value."""
    span = [0, warmup_iters]
    for j, group in enumerate(optimizer.param_groups):
        start = hyp["warmup_bias_lr"] if j == BIAS_GROUP else 0.0
        group["lr"] = float(np.interp(iteration, span, [start, group["initial_lr"] * epoch_factor]))
        if "momentum" in group:
            group["momentum"] = float(np.interp(iteration, span, [hyp["warmup_momentum"], hyp["momentum"]]))


def accumulation_steps(iteration: int, warmup_iters: int, batch_size: int, nominal: int = NOMINAL_BATCH_SIZE) -> int:
    """Batches to accumulate before a step so the effective batch is ``nominal``, ramped from 1 during warm-up."""
    if iteration <= warmup_iters:
        return max(1, int(np.interp(iteration, [0, warmup_iters], [1, nominal / batch_size]).round()))
    return max(round(nominal / batch_size), 1)


class ModelEMA:
    """Exponential moving average of a model's state (YOLOv5's ModelEMA; decay ramps as d * (1 - e^(-u/tau)))."""

    def __init__(self, model: nn.Module, decay: float = 0.9999, tau: float = 2000, updates: int = 0):
        self.ema = copy.deepcopy(unwrap_model(model)).eval()
        self.updates = updates
        self.decay_base, self.tau = decay, tau
        for p in self.ema.parameters():
            p.requires_grad_(False)

    def decay(self, updates: int) -> float:
        return self.decay_base * (1 - math.exp(-updates / self.tau))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay(self.updates)
        model_state = unwrap_model(model).state_dict()
        for k, v in self.ema.state_dict().items():
            if v.dtype.is_floating_point:
                v *= d
                v += (1 - d) * model_state[k].detach()

    def update_attributes(self, model: nn.Module, names: tuple[str, ...] = ("yaml", "nc", "names", "stride")) -> None:
        for name in names:
            if hasattr(model, name):
                setattr(self.ema, name, getattr(unwrap_model(model), name))


class EarlyStopping:
    """Stop when fitness has not improved for ``patience`` epochs (0 or less disables)."""

    def __init__(self, patience: int = 100):
        self.best_fitness = 0.0
        self.best_epoch = 0
        self.patience = patience if patience > 0 else float("inf")

    def __call__(self, epoch: int, fitness: float) -> bool:
        if fitness >= self.best_fitness:
            self.best_epoch, self.best_fitness = epoch, fitness
        return epoch - self.best_epoch >= self.patience


def fitness(map50: float, map50_95: float) -> float:
    """YOLOv5's model fitness: 0.1 * mAP50 + 0.9 * mAP50-95."""
    return 0.1 * map50 + 0.9 * map50_95
