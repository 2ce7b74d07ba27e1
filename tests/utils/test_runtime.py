"""Side work in child processes (validation plots beside the COCO evaluation)."""

from __future__ import annotations

import os
import sys

import pytest

from yolo_attn.utils.runtime import start_in_children


def pid_and_square(x: int) -> tuple[int, int]:
    return os.getpid(), x * x


def fail(message: str) -> None:
    raise ValueError(message)


def test_children_return_their_results_in_order():
    results = start_in_children([(pid_and_square, (i,)) for i in range(5)])()
    assert [square for _, square in results] == [0, 1, 4, 9, 16]
    if sys.platform == "linux":
        assert os.getpid() not in {pid for pid, _ in results}


def test_a_failing_child_raises_when_waited_for():
    wait = start_in_children([(pid_and_square, (2,)), (fail, ("no figure",))])
    with pytest.raises(ValueError, match="no figure"):
        wait()
    assert start_in_children([])() == []
