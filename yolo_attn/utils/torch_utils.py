"""Small torch helpers shared by the engine: unwrapping DDP models and timing forward passes."""

from __future__ import annotations

import time

import torch
from torch import nn


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare model inside a DataParallel / DistributedDataParallel wrapper."""
    return model.module if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)) else model


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
