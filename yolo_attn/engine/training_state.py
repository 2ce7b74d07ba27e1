"""Everything a training run changes besides the model weights, in one object: optimizer, LR scheduler,
AMP scaler, EMA, early stopping, counters and RNG states (the process-wide ones and the augmentation
generator's). :meth:`TrainingState.state_dict` is what a checkpoint's ``training`` field holds, and
:meth:`TrainingState.load_state_dict` makes a resumed run continue exactly where the saved one stopped."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from yolo_attn.engine.optim import EarlyStopping, ModelEMA


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states as plain values."""
    version, state, gauss = random.getstate()
    numpy_state = np.random.get_state(legacy=True)
    assert isinstance(numpy_state, tuple)  # the legacy form: numpy's dict form only for a non-MT19937 generator
    name, keys, pos, has_gauss, cached = numpy_state
    states = {
        "python": [version, list(state), gauss],
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_state(states: dict[str, Any]) -> None:
    version, state, gauss = states["python"]
    random.setstate((version, tuple(state), gauss))
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


@dataclass
class TrainingState:
    """The optimiser side of a run. ``epoch`` is the last finished epoch (-1 before the first);
    ``earlier_wall_s`` the wall time of the sessions before a resume; ``augment_rng`` the generator the train
    datasets of this process draw their augmentation from (in the main process: with no loader workers)."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    ema: ModelEMA | None
    stopper: EarlyStopping
    augment_rng: np.random.Generator | None = None
    epoch: int = -1
    best_fitness: float = 0.0
    last_opt_step: int = -1
    earlier_wall_s: float = 0.0
    session_start: float = field(default_factory=time.time)

    def wall_s(self) -> float:
        """Wall time of the whole run, the sessions before a resume included."""
        return self.earlier_wall_s + time.time() - self.session_start

    def state_dict(self) -> dict[str, Any]:
        """Plain values and tensors; the EMA weights themselves are the checkpoint's ``ema`` field."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema_updates": self.ema.updates if self.ema is not None else 0,
            "early_stopping": {"best_epoch": self.stopper.best_epoch, "best_fitness": self.stopper.best_fitness},
            "epoch": self.epoch,
            "best_fitness": self.best_fitness,
            "last_opt_step": self.last_opt_step,
            "wall_s": self.wall_s(),
            "rng": rng_state(),
            "augment_rng": self.augment_rng.bit_generator.state if self.augment_rng is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any], ema_weights: dict[str, torch.Tensor] | None = None,
                        restore_rng: bool = True) -> None:
        """Continue from ``state`` (and the EMA weights saved beside it)."""
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if state.get("scheduler"):
            self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None and ema_weights:
            self.ema.ema.load_state_dict(ema_weights)
            self.ema.updates = int(state.get("ema_updates", 0))
        stopping = state.get("early_stopping") or {}
        self.stopper.best_epoch = int(stopping.get("best_epoch", 0))
        self.stopper.best_fitness = float(stopping.get("best_fitness", 0.0))
        self.epoch = int(state.get("epoch", -1))
        self.best_fitness = float(state.get("best_fitness") or 0.0)
        self.last_opt_step = int(state.get("last_opt_step", -1))
        self.earlier_wall_s = float(state.get("wall_s", 0.0))
        if restore_rng and state.get("rng"):
            restore_rng_state(state["rng"])
        if restore_rng and self.augment_rng is not None and state.get("augment_rng"):
            self.augment_rng.bit_generator.state = state["augment_rng"]
