"""Kill anywhere: a short CPU training is SIGKILLed at seeded moments (in a training step, in validation, after a
results.csv row, in the middle of a checkpoint write, between the two renames of a save, after a random delay) and
resumed each time; every run that finishes has exactly E rows in results.csv, rows and weights bit-identical to an
uninterrupted run's."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT
from tests.engine.survive import same_weights, tiny_dataset, write_micro_model
from yolo_attn.checkpoint import load_checkpoint

EPOCHS = 4
KILLS = 12
SEED = 25
# A driver around the CLI that SIGKILLs its own process at the moment KILL_AT names (counted from its start):
#   step:N       the N-th training step            val:N       the N-th NMS batch of validation
#   csv:N        right after the N-th results.csv row (before the checkpoints of that epoch)
#   save:N:B     after B bytes of the N-th checkpoint write
#   rename:N     after the N-th save moved last.pt to last.prev.pt, before the new last.pt is in place
#   time:S       S seconds after start, wherever the run is
DRIVER = '''
import os, signal, sys, threading
import torch
from yolo_attn import cli
from yolo_attn.engine import results, trainer, validator

def die():
    os.kill(os.getpid(), signal.SIGKILL)

kind, *args = os.environ["KILL_AT"].split(":")
seen = {"n": 0}

def nth(n):
    seen["n"] += 1
    return seen["n"] == n

def kill_on_call(owner, name, n, after=False):
    original = getattr(owner, name)
    def wrapper(*a, **k):
        if not after and nth(n):
            die()
        out = original(*a, **k)
        if after and nth(n):
            die()
        return out
    setattr(owner, name, wrapper)

class Dying:
    def __init__(self, file, room):
        self.file, self.room = file, room
    def write(self, data):
        if len(data) >= self.room:
            self.file.write(bytes(data)[: self.room])
            self.file.flush()
            die()
        self.room -= len(data)
        return self.file.write(data)
    def flush(self):
        self.file.flush()

if kind == "step":
    kill_on_call(trainer.Trainer, "train_step", int(args[0]))
elif kind == "val":
    kill_on_call(validator, "non_max_suppression", int(args[0]))
elif kind == "csv":
    kill_on_call(results, "append_results_row", int(args[0]), after=True)
elif kind == "save":
    real_save = torch.save
    torch.save = lambda obj, f, *a, **k: real_save(obj, Dying(f, int(args[1])) if nth(int(args[0])) else f, *a, **k)
elif kind == "rename":
    real_replace = os.replace
    def replace(src, dst):
        real_replace(src, dst)
        if str(dst).endswith(".prev.pt") and nth(int(args[0])):
            die()
    os.replace = replace
elif kind == "time":
    threading.Timer(float(args[0]), die).start()
sys.exit(cli.main(sys.argv[1:]))
'''


def kill_plan(rng: np.random.Generator) -> list[str]:
    """KILLS moments: validation, checkpoint writes and renames included; at most a few that land after the first
    save of their process (so that every process still has two epochs ahead), a random delay first."""
    moments = [f"time:{rng.uniform(1, 8):.1f}"]
    moments += [f"val:{rng.integers(1, 3)}" for _ in range(3)]
    moments += [f"save:{rng.integers(1, 3)}:{rng.integers(1, 60_000)}" for _ in range(3)]
    moments += ["rename:1", "rename:1", "csv:1"]
    moments += [f"step:{rng.integers(1, 5)}" for _ in range(KILLS - len(moments))]
    return moments[:1] + [moments[1:][i] for i in rng.permutation(len(moments) - 1)]


def launch(folder: Path, micro: dict, env: dict, kill_at: str | None) -> subprocess.CompletedProcess:
    """Resume the run in ``folder`` when it has a checkpoint, else start it (in the same folder)."""
    weights = folder / "exp" / "weights"
    if (weights / "last.pt").exists() or (weights / "last.prev.pt").exists():
        argv = ["train", "--resume", str(weights / "last.pt")]
    else:
        argv = ["train", "--cfg", micro["cfg"], "--data", micro["data"], "--epochs", str(EPOCHS), "--img", "64",
                "--batch", "4", "--workers", "0", "--noplots", "--noautoanchor", "--project", str(folder),
                "--name", "exp", "--exist-ok"]
    command = [sys.executable, "-c", DRIVER, *argv] if kill_at else [sys.executable, "-m", "yolo_attn", *argv]
    return subprocess.run(command, env={**env, "KILL_AT": kill_at or ""}, capture_output=True, text=True,
                          timeout=900)


def results_rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "exp" / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def check_finished(folder: Path, reference: Path) -> None:
    rows = results_rows(folder)
    assert [int(r["epoch"]) for r in rows] == list(range(1, EPOCHS + 1))
    assert rows == results_rows(reference)
    for name in ("last.pt", "best.pt"):
        assert same_weights(load_checkpoint(folder / "exp" / "weights" / name),
                            load_checkpoint(reference / "exp" / "weights" / name)), name


@pytest.mark.slow
def test_sigkill_at_any_moment_then_resume_ends_as_an_uninterrupted_run(tmp_path):
    micro = {"cfg": write_micro_model(tmp_path), "data": tiny_dataset(tmp_path / "data")}
    env = {**os.environ, "PYTHONPATH": str(ROOT), "YOLO_ATTN_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    reference = tmp_path / "reference"
    assert launch(reference, micro, env, None).returncode == 0
    folder, landed, finished = tmp_path / "killed", Counter(), 0
    for moment in kill_plan(np.random.default_rng(SEED)):
        result = launch(folder, micro, env, moment)
        if result.returncode == -signal.SIGKILL:
            landed[moment.split(":")[0]] += 1
            continue
        assert result.returncode == 0, result.stderr[-3000:]  # the moment never came: the run finished first
        check_finished(folder, reference)
        finished += 1
        shutil.rmtree(folder)  # the next moments kill a new run
    result = launch(folder, micro, env, None)
    assert result.returncode == 0, result.stderr[-3000:]
    check_finished(folder, reference)
    assert sum(landed.values()) >= 10 and all(landed[kind] for kind in ("val", "save", "rename", "csv", "step")), landed
