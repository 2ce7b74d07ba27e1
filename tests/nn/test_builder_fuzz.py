"""Seeded fuzz: mutated real model YAMLs either build or raise a UserError naming the file, quickly and in
bounded memory (the resource guard, ``yolo_attn/nn/resource_guard.py``). The mutations are
``scripts/fuzz_yaml.py``'s, which also runs larger campaigns.

Most cases mutate yolov5n / yolov7-tiny (cheap to build); the others every config of ``configs/`` and the
tutorials' configs in ``../shared/seed-configs``. Builds run under tighter limits than the defaults (50 M
parameters, 1 GiB and 50 GFLOPs of stride probe) so that a mutant that passes the guard still builds in seconds
and under ~1.2 GB.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

import pytest

from scripts.fuzz_yaml import SMALL_LIMITS, corpus, make_case, run_case
from tests.conftest import ROOT

SEED = 20261121
CASES = 120
SMALL_BIAS = 0.9  # share of cases mutating yolov5n / yolov7-tiny
CASE_SECONDS = 20
MAX_RSS_GROWTH_MIB = 2048
PATHS = corpus(ROOT)


class CaseTimeout(BaseException):
    """Raised by SIGALRM; a BaseException so that the builder cannot wrap it into a UserError."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def expire(signum: int, frame: object) -> None:
        raise CaseTimeout(f"over {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_corpus_has_every_config():
    names = {p.name for p in PATHS}
    assert {"yolov5n.yaml", "yolov7-tiny.yaml", "yolov7-e6.yaml", "yolov5s-CBAM.yaml"} <= names
    assert len(PATHS) >= 20


@pytest.mark.slow
@pytest.mark.parametrize("index", range(CASES))
def test_mutant_builds_or_raises_user_error(index):
    case = make_case(index, SEED, PATHS, SMALL_BIAS)
    with time_limit(CASE_SECONDS):
        outcome = run_case(case, limits=SMALL_LIMITS)
    assert outcome.kind in ("built", "user_error"), f"{case.source} {case.mutations}: {outcome.detail}"
    if outcome.kind == "user_error":
        assert outcome.detail.startswith(case.source), outcome.detail
    assert outcome.rss_mib < MAX_RSS_GROWTH_MIB, f"{case.source} {case.mutations}: peak RSS +{outcome.rss_mib:.0f} MiB"
