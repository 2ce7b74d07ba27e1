"""Intra-op threads sized to the CPU this process can actually get.

A parallel region of PyTorch's OpenMP team ends when its slowest thread ends. When other work holds some of the
cores, a team as wide as the machine waits at every region for a thread that is not running, and the waiting
threads spin before they sleep: the job gets slower and burns CPU that the other work could have used. A team as
wide as the free cores does not wait.

:class:`ThreadGovernor` measures the CPU that other processes take on the cores this process may run on (its
affinity), from ``/proc/stat`` less this process tree's own time (its data-loader workers included), and sets
``torch.set_num_threads`` to the cores left, at most the count it started with (all the cores it may use, or its
share under ``ablate --jobs``) and at least one. The first window starts with the process (:func:`mark_start`), so
the load at start counts; later windows follow the load as other jobs come and go. Where ``/proc`` is missing
(not Linux) the thread count is left alone.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

LOGGER = logging.getLogger(__name__)
PROC = Path("/proc")
HEADROOM = 0.3  # cores: a quiet machine's background (a few % of a core) must not cost a thread


def _allowed_cpus() -> set[int]:
    """The CPUs this process may run on (its affinity where the system has one)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return set(affinity(0)) if affinity is not None else set(range(os.cpu_count() or 1))


def available_cores() -> int:
    """How many CPU cores this process may run on."""
    return len(_allowed_cpus())


def _busy_ticks(cpus: set[int]) -> int | None:
    """Clock ticks the CPUs ``cpus`` spent busy (everything but idle and iowait) since boot; None without /proc."""
    try:
        lines = (PROC / "stat").read_text().splitlines()
    except OSError:
        return None
    busy = 0
    for line in lines:
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            ticks = [int(f) for f in fields[:8]]  # user nice system idle iowait irq softirq steal
            busy += sum(ticks) - ticks[3] - ticks[4]
    return busy


def _children(pid: int) -> list[int]:
    """The child processes of ``pid`` (of all its threads)."""
    pids: list[int] = []
    try:
        for task in (PROC / str(pid) / "task").iterdir():
            pids += [int(p) for p in (task / "children").read_text().split()]
    except OSError:
        pass
    return pids


def _tree_ticks(pid: int) -> int:
    """User + system clock ticks of ``pid`` and its live descendants."""
    try:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0
    return int(fields[11]) + int(fields[12]) + sum(_tree_ticks(child) for child in _children(pid))


@dataclass(frozen=True)
class CpuSample:
    """Busy ticks of the allowed CPUs and of this process tree at one moment."""

    when: float
    busy: int
    ours: int
    pid: int

    @classmethod
    def now(cls, cpus: set[int]) -> CpuSample | None:
        busy, pid = _busy_ticks(cpus), os.getpid()
        return None if busy is None else cls(time.monotonic(), busy, _tree_ticks(pid), pid)

    def others_since(self, earlier: CpuSample) -> float:
        """Cores that other processes kept busy on average between ``earlier`` and this sample."""
        seconds = max(self.when - earlier.when, 1e-3)
        ticks = (self.busy - earlier.busy) - (self.ours - earlier.ours)
        return max(0.0, ticks / os.sysconf("SC_CLK_TCK") / seconds)


_START: CpuSample | None = None


def mark_start() -> None:
    """Take the sample the first window of every later :class:`ThreadGovernor` starts from (at process start)."""
    global _START
    _START = CpuSample.now(_allowed_cpus())


def fitting_threads(limit: int, cores: int, others: float) -> int:
    """The widest team, at most ``limit``, that the ``cores`` less the ``others`` busy ones can run at once."""
    return max(1, min(limit, int(cores - others + HEADROOM)))


class ThreadGovernor:
    """Sets torch's intra-op threads to the free cores, every ``every_s`` seconds of a loop that calls
    :meth:`update` (a training or validation loop), when ``enabled`` (on CPU); or to ``fixed`` threads. Leaving
    the ``with`` block gives the process its thread count back."""

    def __init__(self, enabled: bool = True, fixed: int = 0, every_s: float = 5.0) -> None:
        import torch  # here: the command line marks the start (this module) before anything imports torch

        self.torch = torch
        self.cpus = _allowed_cpus()
        self.restore = torch.get_num_threads()
        if fixed:
            torch.set_num_threads(fixed)
            enabled = False
        self.limit = torch.get_num_threads()
        self.every_s = every_s
        start = _START if _START is not None and _START.pid == os.getpid() else None  # not a forked worker's parent's
        self.last = (start or CpuSample.now(self.cpus)) if enabled and self.limit > 1 else None

    def update(self) -> None:
        """Resize the team if a window has passed; cheap otherwise (one clock read)."""
        if self.last is None or time.monotonic() - self.last.when < self.every_s:
            return
        sample = CpuSample.now(self.cpus)
        if sample is None:
            self.last = None
            return
        others = sample.others_since(self.last)
        threads = fitting_threads(self.limit, len(self.cpus), others)
        if threads != self.torch.get_num_threads():
            LOGGER.debug("other processes keep %.1f of %d cores busy: %d intra-op threads", others, len(self.cpus),
                         threads)
            self.torch.set_num_threads(threads)
        self.last = sample

    def __enter__(self) -> ThreadGovernor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.torch.set_num_threads(self.restore)  # a caller in the same process (tests, ablate) keeps its own
