"""DistributedDataParallel set-up for ``torchrun --nproc_per_node=N -m yolo_attn train ...``.

torchrun sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; one process drives one device (one GPU with
NCCL, or the CPU with Gloo). Rank 0 logs, validates and saves.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from yolo_attn.errors import UserError
from yolo_attn.plugins import loaded_plugins
from yolo_attn.utils.device import device_indices, select_device

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in the job: global rank, local rank, world size and its device."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank in (-1, 0)


def init_distributed(device: str | None, timeout_s: int = 10800) -> DistributedContext:
    """Join the torchrun process group when launched by torchrun (world size > 1), else a single-process context."""
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    if world_size <= 1:
        n = len(device_indices(device))
        if n > 1:
            raise UserError(
                f"--device {device}: several GPUs need one process each; run "
                f"'torchrun --nproc_per_node={n} -m yolo_attn train ...'"
            )
        return DistributedContext(-1, -1, 1, select_device(device))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0))
    chosen = select_device(device)
    if chosen.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise UserError(f"local rank {local_rank} has no GPU ({torch.cuda.device_count()} visible)")
        torch.cuda.set_device(local_rank)
        chosen, backend = torch.device("cuda", local_rank), "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    context = DistributedContext(rank, local_rank, world_size, chosen)
    check_same_plugins(context)
    return context


def check_same_plugins(context: DistributedContext) -> None:
    """Every rank must have loaded the same plugins (each process loads them from its own command line): rank 0
    logs each rank's, and a difference stops every rank."""
    loaded = [plugin.short() for plugin in loaded_plugins()]
    per_rank: list[list[str]] = [[] for _ in range(context.world_size)]
    dist.all_gather_object(per_rank, loaded)
    if not any(per_rank):
        return
    if context.is_main:
        for rank, plugins in enumerate(per_rank):
            LOGGER.info(f"rank {rank}: plugins {', '.join(plugins) or 'none'}")
    if any(plugins != per_rank[0] for plugins in per_rank):
        raise UserError(f"the ranks loaded different plugins ({per_rank}); give every rank the same --plugin")


def wrap_model(model: nn.Module, context: DistributedContext, sync_bn: bool = False) -> nn.Module:
    """DDP-wrap ``model`` (optionally converting BatchNorm to SyncBatchNorm, GPUs only) when distributed; else return
    it."""
    if not context.enabled:
        return model
    if sync_bn and context.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    device_ids = [context.local_rank] if context.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids, output_device=device_ids and device_ids[0])


def broadcast_object(value: Any, context: DistributedContext, src: int = 0) -> Any:
    """``value`` of rank ``src`` on every rank (identity when not distributed)."""
    if not context.enabled:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def cleanup(context: DistributedContext) -> None:
    """Leave the process group (call once at the end of a distributed run)."""
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()
