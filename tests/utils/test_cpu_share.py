"""The thread governor: free cores from /proc, the team it picks, and the thread count it gives back."""

from __future__ import annotations

import multiprocessing
import os
import sys
import time

import pytest
import torch

from yolo_attn.utils import cpu_share
from yolo_attn.utils.cpu_share import CpuSample, ThreadGovernor, fitting_threads

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@pytest.mark.parametrize(("limit", "cores", "others", "expected"), [
    (2, 2, 0.05, 2),   # a quiet machine keeps the whole team
    (2, 2, 1.0, 1),    # one other busy core: a team of one
    (2, 2, 0.8, 1),
    (2, 2, 3.5, 1),    # never fewer than one
    (8, 16, 0.0, 8),   # never more than the process started with (its --jobs share)
    (16, 16, 5.0, 11),
])
def test_fitting_threads(limit: int, cores: int, others: float, expected: int) -> None:
    assert fitting_threads(limit, cores, others) == expected


def test_others_are_busy_cores_less_our_own() -> None:
    tick = os.sysconf("SC_CLK_TCK")
    earlier = CpuSample(when=10.0, busy=1000, ours=400, pid=1)
    later = CpuSample(when=12.0, busy=1000 + 3 * tick, ours=400 + 1 * tick, pid=1)  # 3 busy core-s, 1 of them ours
    assert later.others_since(earlier) == pytest.approx(1.0)


def _burn(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


@linux_only
def test_a_child_process_counts_as_ours() -> None:
    cpus = cpu_share._allowed_cpus()
    before = CpuSample.now(cpus)
    assert before is not None
    child = multiprocessing.get_context("fork").Process(target=_burn, args=(1.0,))
    child.start()
    time.sleep(0.8)
    during = CpuSample.now(cpus)
    child.join()
    assert during is not None
    assert during.ours - before.ours >= 0.4 * os.sysconf("SC_CLK_TCK")  # the busy child's ticks are in our tree


def _samples(governor: ThreadGovernor, others: float) -> CpuSample:
    """A sample 5 s after the governor's last one, in which other processes kept ``others`` cores busy."""
    assert governor.last is not None
    seconds = 5.0
    ticks = int(others * seconds * os.sysconf("SC_CLK_TCK"))
    return CpuSample(governor.last.when + seconds, governor.last.busy + ticks, governor.last.ours, os.getpid())


def test_the_governor_narrows_and_widens_the_team_and_gives_the_count_back(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        monkeypatch.setattr(cpu_share, "_allowed_cpus", lambda: {0, 1})
        with ThreadGovernor(enabled=True, every_s=0.0) as governor:
            monkeypatch.setattr(cpu_share.time, "monotonic", lambda: 1e12)  # every window has passed
            assert governor.last is not None and governor.limit == 2
            for others, threads in ((1.2, 1), (0.1, 2), (2.0, 1)):
                monkeypatch.setattr(CpuSample, "now", classmethod(lambda cls, cpus, o=others: _samples(governor, o)))
                governor.update()
                assert torch.get_num_threads() == threads
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_fixed_team_and_a_single_thread_are_left_alone() -> None:
    before = torch.get_num_threads()
    try:
        with ThreadGovernor(enabled=True, fixed=1) as governor:
            assert governor.last is None and torch.get_num_threads() == 1
            governor.update()
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == before
    finally:
        torch.set_num_threads(before)


@linux_only
def test_a_forked_process_does_not_use_its_parents_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu_share, "_START", CpuSample(time.monotonic(), 0, 0, pid=os.getpid() + 1))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    governor = ThreadGovernor(enabled=True)
    assert governor.last is not None and governor.last.pid == os.getpid()
