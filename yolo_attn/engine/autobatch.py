"""``--batch -1``: the training batch size chosen for the machine (the rule of YOLOv5's ``utils/autobatch.py``).

On CUDA, a few training steps of the model at batch 1, 2, 4, 8 and 16 measure its peak memory; a straight line
through those points gives the largest batch that uses :data:`AUTO_BATCH_MEMORY` of the memory free before the
run. Without CUDA there is no memory worth measuring this way (the CPU's is shared with the loader workers and
the OS swaps rather than fails), so the batch is :data:`CPU_AUTO_BATCH`, YOLOv5's default, as YOLOv5 does.
"""

from __future__ import annotations

import copy
import logging

import numpy as np
import torch
from torch import nn

LOGGER = logging.getLogger(__name__)

AUTO_BATCH = -1  # the --batch value that asks for the automatic size
CPU_AUTO_BATCH = 16
AUTO_BATCH_MEMORY = 0.6  # the share of the free GPU memory the chosen batch should use
PROBE_BATCHES = (1, 2, 4, 8, 16)
MAX_AUTO_BATCH = 1024


def batch_for_memory(batches: list[int], peak_bytes: list[int], free_bytes: int, share: float = AUTO_BATCH_MEMORY,
                     fallback: int = CPU_AUTO_BATCH) -> int:
    """The batch whose memory, on the line fitted through (batch, peak bytes), is ``share`` of ``free_bytes``;
    ``fallback`` when fewer than two probes succeeded or the line gives less than 1 or more than
    :data:`MAX_AUTO_BATCH`."""
    if len(batches) < 2:
        return fallback
    slope, intercept = np.polyfit(batches, peak_bytes, deg=1)
    if slope <= 0:
        return fallback
    batch = int((free_bytes * share - intercept) / slope)
    return batch if 1 <= batch <= MAX_AUTO_BATCH else fallback


def _output_sum(out: object) -> torch.Tensor:
    """The sum of every tensor in a head's training output (a tensor, or lists/dicts of them): something to
    back-propagate through the whole graph."""
    if isinstance(out, torch.Tensor):
        return out.float().sum()
    items = out.values() if isinstance(out, dict) else out if isinstance(out, (list, tuple)) else ()
    return sum((_output_sum(item) for item in items), torch.zeros(()))


def _peak_memory(model: nn.Module, batch: int, img_size: int, device: torch.device) -> int | None:
    """Peak CUDA bytes of one forward and backward pass at ``batch`` (None: out of memory)."""
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    try:
        images = torch.rand(batch, 3, img_size, img_size, device=device)
        with torch.autocast(device_type="cuda"):
            out = model(images)
        _output_sum(out).backward()
        return int(torch.cuda.max_memory_allocated(device))
    except torch.cuda.OutOfMemoryError:
        return None
    finally:
        model.zero_grad(set_to_none=True)


def auto_batch_size(model: nn.Module, img_size: int, device: torch.device) -> int:
    """The batch size ``--batch -1`` means for ``model`` at ``img_size`` on ``device`` (see the module's doc)."""
    if device.type != "cuda":
        LOGGER.info(f"--batch -1: no CUDA device to measure; using batch {CPU_AUTO_BATCH}")
        return CPU_AUTO_BATCH
    probe = copy.deepcopy(model).train()
    total = torch.cuda.get_device_properties(device).total_memory
    free = total - torch.cuda.memory_reserved(device)
    batches, peaks = [], []
    for batch in PROBE_BATCHES:
        peak = _peak_memory(probe, batch, img_size, device)
        if peak is None:
            break
        batches.append(batch)
        peaks.append(peak)
    del probe
    torch.cuda.empty_cache()
    chosen = batch_for_memory(batches, peaks, free)
    LOGGER.info(f"--batch -1: batch {chosen} for {AUTO_BATCH_MEMORY:.0%} of {free / 2**30:.1f} GiB free on {device} "
                f"(measured at {', '.join(map(str, batches))})")
    return chosen
