"""Small torch helpers shared by the engine: unwrapping DDP models, the tensors of a layer's output, timing
forward passes."""

from __future__ import annotations

import time
from collections.abc import Iterator

import torch
from torch import nn


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare model inside a DataParallel / DistributedDataParallel wrapper."""
    return model.module if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)) else model


def tensors_in(value: object) -> Iterator[torch.Tensor]:
    """The tensors of a layer's output: a tensor, or (nested) lists and tuples of them, as heads return."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from tensors_in(item)


@torch.no_grad()
def forward_latency_ms(module: nn.Module, x: torch.Tensor, repeats: int = 10) -> float:
    """Fastest eval-mode forward of ``x`` in ms over ``repeats`` runs after one warm-up (the run least
    disturbed by other load); CUDA work is synchronised around each run."""
    module = module.eval()
    synchronize = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    module(x)
    times = []
    for _ in range(repeats):
        synchronize()
        start = time.perf_counter()
        module(x)
        synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    return min(times)
