"""The ablation's executors: the GPUs and threads of parallel jobs, the errors of a missing or misused Ray, and a
tiny ablation whose table is the same figure for figure with two local jobs, or two Ray tasks, as with one."""

from __future__ import annotations

import builtins
import csv
import logging
import re
from pathlib import Path

import pytest
import torch

from yolo_attn.cli import main
from yolo_attn.data.synthetic import generate_demo_dataset
from yolo_attn.engine import executors
from yolo_attn.engine.executors import LocalPool, RayExecutor, job_devices, make_executor, threads_per_job
from yolo_attn.errors import UserError

BROKEN_BLOCKS = Path(__file__).parents[1] / "fixtures" / "plugins" / "broken_blocks.py"
TIMING_COLUMNS = ("wall_s", "cpu_ms", "cpu_p90_ms", "gpu_ms", "gpu_p90_ms")  # measured, not computed


@pytest.fixture(autouse=True)
def label_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_ATTN_CACHE", str(tmp_path / "cache"))


def test_each_job_gets_one_gpu_round_robin():
    assert job_devices("0,1,2,3", 6) == ["0", "1", "2", "3", "0", "1"]
    assert job_devices("cuda:2,3", 2) == ["2", "3"]
    assert job_devices("cpu", 3) == ["cpu"] * 3 and job_devices("", 2) == ["", ""] and job_devices("1", 2) == ["1"] * 2


def test_cores_are_divided_among_the_jobs(monkeypatch):
    monkeypatch.setattr(executors, "available_cores", lambda: 16)
    assert [threads_per_job(jobs) for jobs in (1, 3, 16, 40)] == [16, 5, 1, 1]


def test_ray_missing_says_how_to_install_it(monkeypatch, tmp_path):
    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray":
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    executor = make_executor("ray", 1, "cpu", None, tmp_path)
    with pytest.raises(UserError, match=r"pip install 'yolo-attn\[ray\]'"):
        executor.run_all(lambda item, device: item, [1], lambda item, why: item)
    with pytest.raises(UserError, match="--ray-address needs --executor ray"):
        make_executor("local", 1, "cpu", "10.0.0.1:6379", tmp_path)


def test_one_job_runs_here_on_the_given_device():
    assert LocalPool(1, "cpu").run_all(lambda item, device: (item, device), [1, 2], lambda item, why: None) == [
        (1, "cpu"), (2, "cpu")]


def ablation_figures(path):
    """``ablation.csv`` without its timings: the timing columns, and the latency a verdict quotes."""
    with open(path, newline="") as f:
        rows = [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in csv.DictReader(f)]
    return [{**row, "verdict": re.sub(r"[-+][\d.]+ ms", "(latency)", row["verdict"])} for row in rows]


def ablate(data: str, project, name: str, *extra: str) -> list[dict[str, str]]:
    argv = ["ablate", "--blocks", "SE", "--seeds", "1", "--data", data, "--epochs", "1", "--img", "64", "--batch", "4",
            "--workers", "0", "--project", str(project), "--name", name, *extra]
    assert main(argv) == 0
    return ablation_figures(project / name / "ablation.csv")


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    """The base and SE, one seed each, trained one after the other in this process with one torch thread (as every
    job of two on two cores has): the demo set's path and the table's figures."""
    folder = tmp_path_factory.mktemp("sequential")
    data = str(generate_demo_dataset(folder / "demo", n_train=8, n_val=4, img_size=64))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("YOLO_ATTN_CACHE", str(folder / "cache"))
            yield data, ablate(data, folder, "one")
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_two_jobs_give_the_figures_of_one(sequential, tmp_path, monkeypatch, caplog):
    """Two processes of one torch thread each give bit for bit the table of the sequential run (timings aside)."""
    data, figures = sequential
    monkeypatch.setattr(executors, "available_cores", lambda: 2)
    with caplog.at_level(logging.INFO, logger="yolo_attn"):
        parallel = ablate(data, tmp_path, "two", "--jobs", "2")
    assert "ablate: 2 jobs, 1 threads each" in caplog.text
    assert "ablate: training SE-after9 (after 9), seed 0" in caplog.text  # a worker's record, passed on
    assert [r["status"] for r in parallel if r["row"] == "run"] == ["ok", "ok"]
    assert parallel == figures


@pytest.mark.slow
def test_ray_tasks_give_the_figures_of_one_job(sequential, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    data, figures = sequential
    monkeypatch.setattr(executors, "available_cores", lambda: 2)
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        RayExecutor(2, "cpu", "local", tmp_path).check_shared_storage(ray)  # every node (this one) reads the marker
        assert list(tmp_path.iterdir()) == []  # and it is gone
        assert ablate(data, tmp_path, "ray", "--executor", "ray", "--jobs", "2") == figures
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_a_pair_failing_in_a_worker_is_marked_and_the_others_go_on(sequential, tmp_path, capsys, clean_plugins):
    """A plugin block whose backward fails (an in-place change of a saved tensor): the workers load the plugin (the
    variant builds there) and its pair fails, marked; the base's pair finishes, and --resume keeps it."""
    data, _ = sequential
    argv = ["ablate", "--plugin", str(BROKEN_BLOCKS), "--blocks", "InplaceGate", "--seeds", "1", "--data", data,
            "--epochs", "1", "--img", "64", "--batch", "4", "--workers", "0", "--project", str(tmp_path), "--name",
            "broken", "--jobs", "2"]
    assert main(argv) == 1
    assert "InplaceGate-after9 seed 0 FAILED (RuntimeError: " in capsys.readouterr().err
    with open(tmp_path / "broken" / "ablation.csv", newline="") as f:
        runs = [(r["variant"], r["status"]) for r in csv.DictReader(f) if r["row"] == "run"]
    assert runs == [("base", "ok"), ("InplaceGate-after9", "failed")]
    assert main([*argv, "--resume"]) == 1  # the finished pair is kept, the failed one trains (and fails) again
    log = capsys.readouterr().err
    assert "base seed 0 already trained, skipping" in log and "training InplaceGate-after9" in log
