"""Process-wide CPU settings for the command line: sleeping OpenMP threads and glibc malloc that reuses memory.

PyTorch hands every CPU tensor back to ``malloc``. glibc serves blocks over 32 MiB with fresh ``mmap``
pages, so each forward pass at 640 px faults in (and the kernel zeroes) its activations again: about
2 s of system time per yolov5n batch of 16 on a 2-core CPU. OpenMP's default barrier spin burns the
cores that the dataloader workers and other processes need; on a busy 2-core machine it tripled the
CPU time of a training step. The library never calls these; ``yolo-attn`` does, before torch loads.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc <malloc.h>
KEEP_FREED_BYTES = 1 << 30


def sleep_idle_openmp_threads() -> None:
    """``OMP_WAIT_POLICY=PASSIVE`` unless the variable is set; OpenMP reads it when torch loads it."""
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def reuse_freed_memory() -> bool:
    """glibc: large blocks from the heap, freed memory kept for the next batch; False where unavailable."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # not glibc (macOS, Windows)
        return False
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP_FREED_BYTES))


def configure_process() -> None:
    """Both settings, for a process that runs one command (call it before importing torch)."""
    sleep_idle_openmp_threads()
    reuse_freed_memory()
