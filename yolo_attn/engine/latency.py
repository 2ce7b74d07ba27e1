"""Latency of several models measured fairly against each other.

Timings taken at different moments compare the machine's load, not the models. Here every model runs on the same
input, in turns (A B C A B C ...), after a warm-up of each, on a fixed number of CPU threads; the result is the
median and the 90th percentile of each model's runs. CUDA work is synchronised around every run.

:func:`gemm_rate` times a square fp32 matrix product the same way: the machine's own limit, against which a
model's GFLOPs x images per second can be read (``yolo-attn benchmark``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

WARMUP = 3
RUNS = 20
GEMM_SIZE = 2048  # a square fp32 product of this side keeps every core busy (BLAS blocking needs no more)


@dataclass(frozen=True)
class Latency:
    """One model's forward time in ms: median and 90th percentile over ``runs`` interleaved runs."""

    median_ms: float
    p90_ms: float
    runs: int


@contextlib.contextmanager
def cpu_threads(threads: int) -> Iterator[None]:
    """Run torch's CPU operators on ``threads`` threads for the duration."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@torch.no_grad()
def interleaved_latency(models: Mapping[str, nn.Module], x: torch.Tensor, runs: int = RUNS, warmup: int = WARMUP,
                        threads: int | None = None) -> dict[str, Latency]:
    """Time one eval-mode forward of ``x`` per model, ``runs`` rounds of every model in turn after ``warmup``
    rounds, on ``threads`` CPU threads (default: torch's current number). Models must sit on ``x``'s device."""
    if runs < 1:
        raise ValueError("runs must be at least 1")
    synchronize = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    for model in models.values():
        model.eval()
    times: dict[str, list[float]] = {name: [] for name in models}
    with cpu_threads(threads or torch.get_num_threads()):
        for _ in range(warmup):
            for model in models.values():
                model(x)
        for _ in range(runs):
            for name, model in models.items():
                synchronize()
                start = time.perf_counter()
                model(x)
                synchronize()
                times[name].append((time.perf_counter() - start) * 1e3)
    return {name: Latency(float(np.median(t)), float(np.percentile(t, 90)), runs) for name, t in times.items()}


class SquareProduct(nn.Module):
    """``x @ b`` for a fixed square ``b``: the matrix product whose rate :func:`gemm_rate` measures."""

    b: torch.Tensor

    def __init__(self, b: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("b", b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.mm(x, self.b)


def gemm_rate(size: int = GEMM_SIZE, runs: int = RUNS, warmup: int = WARMUP, threads: int | None = None,
              device: torch.device | str = "cpu") -> tuple[float, Latency]:
    """The fp32 GEMM rate in GFLOP/s (``2 size**3`` floating-point operations over the median time) of a square
    ``size x size`` product on ``device``, timed as :func:`interleaved_latency` times models, on ``threads`` CPU
    threads; with the latency it comes from."""
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.rand(size, size, generator=generator).to(device) for _ in range(2))
    latency = interleaved_latency({"gemm": SquareProduct(b)}, a, runs, warmup, threads)["gemm"]
    return 2 * size**3 / (latency.median_ms * 1e6), latency
