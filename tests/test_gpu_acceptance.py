"""``scripts/gpu_acceptance.py`` on the CPU: the checks the CPU can run pass at tiny sizes, every CUDA check is named as
skipped, the report goes to ``--out`` only, and the exit code is 0."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from scripts.gpu_acceptance import PLAN
from tests.conftest import ROOT


@pytest.mark.slow
def test_cpu_run_passes_and_names_the_skipped_cuda_checks(tmp_path, shared):
    out = tmp_path / "gpu.md"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_acceptance.py"), "--device", "cpu", "--out",
                           str(out)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = out.read_text()
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1] for line in text.splitlines()
            if line.startswith("| ") and not line.startswith("| check")}
    cuda_checks = [name for name, _, where in PLAN if where == "cuda"]
    assert cuda_checks and all(rows[name] == "skipped" for name in cuda_checks)
    assert "Skipped: " + "; ".join(cuda_checks) + "." in text
    ran = [name for name, _, where in PLAN if where != "cuda"]
    assert all(rows[name] == "pass" for name in ran), text
    assert "CPU (CUDA checks skipped)" in text
