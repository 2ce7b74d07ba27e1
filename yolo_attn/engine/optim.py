"""Optimisers and their parameter groups, learning-rate schedules, warm-up, model EMA and early stopping.

Follows YOLOv5's ``train.py`` / ``utils/torch_utils.py`` recipe (Jocher et al. 2020): three parameter
groups (biases, decayed weights, normalisation weights), linear or one-cycle cosine decay to
``lr0 * lrf``, a warm-up that ramps weights up from 0 and biases down from ``warmup_bias_lr``, and an
exponential moving average of the weights with a ramped decay (Polyak averaging). Ultralytics 8.4's choices
(its ``engine/trainer.py``, ``optim/muon.py``) are here too: ``optimizer=auto`` (:func:`auto_optimizer`) and
MuSGD (:class:`MuSGD`), SGD with a Muon term (Jordan et al., "Muon: An optimizer for hidden layers in neural
networks", 2024) on every matrix and convolution filter.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from yolo_attn.errors import UserError
from yolo_attn.nn.heads.contract import HeadContract
from yolo_attn.nn.model import DetectionModel
from yolo_attn.utils.torch_utils import unwrap_model

NOMINAL_BATCH_SIZE = 64
AUTO = "auto"  # --optimizer auto: chosen from the model's schema (and for Ultralytics' schema, the run's length)
OPTIMIZERS = ("SGD", "Adam", "AdamW", "MuSGD")  # the names build_optimizer knows
GROUP_KINDS = ("bias", "weight", "norm")  # each group's "param_group" entry, in group order
# Ultralytics' optimizer=auto: AdamW for runs of at most this many nominal-batch iterations, else MuSGD.
AUTO_MAX_ADAMW_ITERATIONS = 10_000
AUTO_MOMENTUM, MUSGD_LR = 0.9, 0.01
# MuSGD as Ultralytics' trainer builds it: the Muon step's and the SGD step's shares of the lr, and the lr factor
# of the head's class branches.
MUON_SHARE, SGD_SHARE, CLASS_BRANCH_LR_GAIN = 0.2, 1.0, 3.0
# Muon's quintic Newton-Schulz iteration (Jordan et al. 2024): coefficients (a, b, c) and steps.
NEWTON_SCHULZ = (3.4445, -4.7750, 2.0315)
NEWTON_SCHULZ_STEPS = 5


@dataclass(frozen=True)
class AutoOptimizer:
    """What ``optimizer=auto`` picked: the optimiser's name, its lr0 and momentum (Adam's beta1)."""

    name: str
    lr: float
    momentum: float


def auto_iterations(images: int, batch_size: int, nominal_batch: int, epochs: int) -> int:
    """The run's length as Ultralytics' ``optimizer=auto`` counts it: steps of the larger of the batch and the nominal
    batch over ``images``, times ``epochs``."""
    return math.ceil(images / max(batch_size, nominal_batch)) * epochs


def auto_optimizer(nc: int, iterations: int) -> AutoOptimizer:
    """Ultralytics 8.4's ``optimizer=auto``: AdamW at lr0 ``round(0.002 * 5 / (4 + nc), 6)`` for a run of at most
    10,000 iterations (:func:`auto_iterations`), else MuSGD at lr0 0.01; momentum 0.9 either way."""
    if iterations > AUTO_MAX_ADAMW_ITERATIONS:
        return AutoOptimizer("MuSGD", MUSGD_LR, AUTO_MOMENTUM)
    return AutoOptimizer("AdamW", round(0.002 * 5 / (4 + nc), 6), AUTO_MOMENTUM)


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


def class_branch_parameters(model: nn.Module) -> set[int]:
    """Ids of the parameters in the submodules the model's head declares as its class branches (its contract's
    ``class_branches``); empty for a model without such a head."""
    head = getattr(unwrap_model(model), "head", None)
    contract = getattr(type(head), "contract", None)
    names = contract.class_branches if isinstance(contract, HeadContract) else ()
    return {id(p) for name in names for p in getattr(head, name).parameters()}


def musgd_groups(model: nn.Module, lr: float, weight_decay: float) -> list[dict[str, Any]]:
    """MuSGD's groups as Ultralytics builds them: biases, decayed weights and normalisation weights as
    :func:`parameter_groups` splits them, except that every matrix and convolution filter goes to a fourth, decayed
    group that also takes the Muon step; each group split again so the head's class branches train at 3x lr."""
    matrices = [p for p in model.parameters() if p.ndim in (2, 4)]
    taken = {id(p) for p in matrices}
    kinds = [[p for p in group if id(p) not in taken] for group in parameter_groups(model)]
    kinds.append(matrices)
    decays = (0.0, weight_decay, 0.0, weight_decay)
    boosted = class_branch_parameters(model)
    groups = []
    for kind, params, decay in zip((*GROUP_KINDS, "muon"), kinds, decays, strict=True):
        settings = {"weight_decay": decay, "use_muon": kind == "muon", "param_group": kind}
        groups.append({"params": [p for p in params if id(p) not in boosted], "lr": lr, **settings})
        groups.append({"params": [p for p in params if id(p) in boosted], "lr": lr * CLASS_BRANCH_LR_GAIN, **settings})
    return groups


def build_optimizer(
    model: nn.Module, name: str = "SGD", lr: float = 0.01, momentum: float = 0.937, weight_decay: float = 5e-4
) -> torch.optim.Optimizer:
    """SGD (Nesterov), Adam or AdamW with groups [biases, weights (decayed), norm weights], only group 1 decaying;
    or MuSGD with :func:`musgd_groups`. Each group's ``param_group`` names its kind (``bias`` for warm-up)."""
    if name == "MuSGD":
        return MuSGD(musgd_groups(model, lr, weight_decay), lr=lr, momentum=momentum, nesterov=True)
    biases, decayed, norm_weights = parameter_groups(model)
    optimizer: torch.optim.Optimizer
    if name == "SGD":
        optimizer = torch.optim.SGD(biases, lr=lr, momentum=momentum, nesterov=True)
    elif name == "AdamW":
        optimizer = torch.optim.AdamW(biases, lr=lr, betas=(momentum, 0.999), weight_decay=0.0)
    elif name == "Adam":
        optimizer = torch.optim.Adam(biases, lr=lr, betas=(momentum, 0.999))
    else:
        raise ValueError(f"unknown optimizer {name!r} (use one of {', '.join(OPTIMIZERS)})")
    optimizer.add_param_group({"params": decayed, "weight_decay": weight_decay})
    optimizer.add_param_group({"params": norm_weights, "weight_decay": 0.0})
    for group, kind in zip(optimizer.param_groups, GROUP_KINDS, strict=True):
        group["param_group"] = kind
    return optimizer


def orthogonalize(matrix: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """About ``U @ V.T`` of ``matrix = U S V.T`` (singular values pushed towards 1) by Muon's quintic Newton-Schulz
    iteration in bfloat16, on the Frobenius-normalised matrix (transposed while it has more rows than columns)."""
    x = matrix.bfloat16()
    x = x / (x.norm() + eps)
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    a, b, c = NEWTON_SCHULZ
    for _ in range(NEWTON_SCHULZ_STEPS):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if tall else x


def muon_direction(grad: torch.Tensor, momentum: torch.Tensor, beta: float, nesterov: bool) -> torch.Tensor:
    """Muon's update for one tensor: its momentum (an EMA of the gradients, updated in place), looked ahead with
    ``nesterov``, orthogonalised as a matrix of ``shape[0]`` rows and scaled by ``sqrt(max(1, rows / cols))`` of the
    tensor's last two dimensions (1 for square convolution kernels), as Ultralytics scales it."""
    momentum.mul_(beta).add_(grad, alpha=1 - beta)
    direction = momentum * beta + grad * (1 - beta) if nesterov else momentum
    scale = max(1.0, grad.shape[-2] / grad.shape[-1]) ** 0.5
    return orthogonalize(direction.reshape(direction.shape[0], -1)).to(grad.dtype).mul_(scale).reshape(grad.shape)


class MuSGD(torch.optim.Optimizer):
    """SGD with momentum whose ``use_muon`` groups also take a Muon step, as Ultralytics 8.4's MuSGD.

    A ``use_muon`` parameter first moves by ``-lr * muon * muon_direction(...)`` (its own momentum buffer), then by
    an SGD step at ``lr * sgd`` with a second buffer; other groups take the SGD step alone at ``lr``. The SGD step
    adds ``weight_decay * p`` to the gradient (``p`` after the Muon step) and uses Nesterov momentum with
    ``nesterov``. ``muon`` / ``sgd`` default to Ultralytics' trainer's 0.2 / 1.0.
    """

    def __init__(self, params: Iterable[Any], lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 0.0,
                 nesterov: bool = True, use_muon: bool = False, muon: float = MUON_SHARE, sgd: float = SGD_SHARE):
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "nesterov": nesterov,
                    "use_muon": use_muon}
        super().__init__(params, defaults)
        self.muon, self.sgd = muon, sgd

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One update of every parameter with a gradient (``closure`` re-evaluates the loss, as for any optimiser)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, beta, nesterov = group["lr"], group["momentum"], group["nesterov"]
            for p in (p for p in group["params"] if p.grad is not None):
                state, grad, sgd_lr = self.state[p], p.grad, lr
                if group["use_muon"]:
                    muon_momentum = state.setdefault("muon_momentum", torch.zeros_like(p))
                    p.add_(muon_direction(grad, muon_momentum, beta, nesterov), alpha=-lr * self.muon)
                    sgd_lr = lr * self.sgd
                if group["weight_decay"]:
                    grad = grad.add(p, alpha=group["weight_decay"])
                buffer = state.setdefault("momentum_buffer", torch.zeros_like(p))
                buffer.mul_(beta).add_(grad)
                p.add_(grad.add(buffer, alpha=beta) if nesterov else buffer, alpha=-sgd_lr)
        return loss


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
        is_bias = group.get("param_group", GROUP_KINDS[j] if j < len(GROUP_KINDS) else None) == "bias"  # older runs
        start = hyp["warmup_bias_lr"] if is_bias else 0.0
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
