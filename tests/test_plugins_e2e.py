"""Plugins end to end, in processes of their own: the seed posts' blocks trained on COCO8 through a wheel install from
a folder outside the checkout (val refused without the plugin, the same figures with it, export), and a plugin
block trained by torchrun on two gloo ranks that both report it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch

from tests.conftest import CONFIGS, ROOT
from yolo_attn.data.synthetic import generate_demo_dataset
from yolo_attn.nn.yaml_edit import insert_block
from yolo_attn.plugins import sha256_of

SEED_BLOCKS = Path(__file__).parent / "fixtures" / "plugins" / "seed_blocks.py"
IGNORED = shutil.ignore_patterns(".git", "runs", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                                 ".ruff_cache")


def run(command: list[str], cwd: Path, env: dict[str, str], timeout: int = 1200) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def wheel_install(tmp_path: Path) -> Path:
    """yolo-attn built as a wheel and installed in a fresh virtual environment that sees this interpreter's
    packages (torch, ...) but not the checkout; returns the environment's ``bin`` folder."""
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=IGNORED)
    build = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
                 str(tmp_path / "dist"), str(source)], tmp_path, clean_env())
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("yolo_attn-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=900)
    purelib = run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                  tmp_path, clean_env()).stdout.strip()
    Path(purelib, "outer_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # a path, not a site dir
    install = run([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)],
                  tmp_path, clean_env())
    assert install.returncode == 0, install.stderr[-2000:]
    return venv / "bin"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "YOLO_ATTN_PLUGINS")}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


@pytest.mark.slow
def test_the_seed_blocks_train_on_coco8_through_a_wheel_install(tmp_path, shared):
    bin_dir = wheel_install(tmp_path)
    work = tmp_path / "work"  # outside the checkout
    work.mkdir()
    shutil.copy(SEED_BLOCKS, work / "seed_blocks.py")
    env = clean_env(YOLO_ATTN_CACHE=str(tmp_path / "cache"))
    cli = [str(bin_dir / "yolo-attn")]
    where = run([str(bin_dir / "python"), "-c", "import yolo_attn; print(yolo_attn.__file__)"], work, env)
    assert where.stdout.startswith(str(tmp_path / "venv"))
    plugin = ["--plugin", "seed_blocks.py"]
    for source, block, after, output in (("yolov5n.yaml", "GAMAttention", "9", "gam.yaml"),
                                         ("gam.yaml", "BAM", "10", "seed.yaml")):
        edit = run([*cli, "insert", source, "--after", after, "--block", block, *plugin, "-o", output], work, env)
        assert edit.returncode == 0, edit.stderr
    data = str(shared / "data" / "coco8" / "coco8.yaml")
    small = ["--img", "640", "--batch", "4", "--workers", "0"]
    pretrained = str(shared / "weights" / "yolov5n-v6.1.pt")  # its layers go into their counterparts in seed.yaml
    train = run([*cli, "train", "--cfg", "seed.yaml", "--weights", pretrained, "--data", data, "--epochs", "1",
                 "--save-period", "1", "--noplots", *small, *plugin, "--json"], work, env)
    assert train.returncode == 0, train.stderr[-3000:]
    summary = json.loads(train.stdout.strip().splitlines()[-1])
    # epoch1.pt holds the float32 EMA weights the run validated last; best.pt and last.pt are stripped to float16
    weights = str(Path(summary["save_dir"]) / "weights" / "epoch1.pt")
    refused = run([*cli, "val", "--weights", weights, "--data", data, *small[:2]], work, env)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        f"yolo-attn val: error: {weights}: block 'GAMAttention' comes from the plugin {work / 'seed_blocks.py'}, "
        f"which is not loaded: pass --plugin {work / 'seed_blocks.py'} (or name it in $YOLO_ATTN_PLUGINS)"]
    figures = []
    for flags in (plugin, []):
        val = run([*cli, "val", "--weights", weights, "--data", data, *small[:4], "--no-plots", "--json", *flags], work,
                  {**env, "YOLO_ATTN_PLUGINS": "seed_blocks.py"} if not flags else env)
        assert val.returncode == 0, val.stderr[-3000:]
        figures.append({k: v for k, v in json.loads(val.stdout.strip().splitlines()[-1]).items() if k != "speed_ms"})
    assert figures[0] == figures[1]  # through --plugin and through $YOLO_ATTN_PLUGINS
    assert {k: figures[0][k] for k in ("precision", "recall", "map50", "map50_95")} == \
           {k: summary[k] for k in ("precision", "recall", "map50", "map50_95")}  # the training run's last validation
    assert figures[0]["map50"] > 0
    stripped = run([*cli, "val", "--weights", summary["last"], "--data", data, *small[:4], "--no-plots", "--json",
                    *plugin], work, env)
    assert stripped.returncode == 0 and json.loads(stripped.stdout.strip().splitlines()[-1])["map50"] > 0
    export = run([*cli, "export", "--weights", weights, "--img", "640", *plugin, "--output", "seed.onnx"], work, env)
    assert export.returncode == 0, export.stderr[-3000:]
    assert (work / "seed.onnx").stat().st_size > 1_000_000
    print(f"wheel run: train {summary}; val {figures[0]}")


def bam_setup(tmp_path: Path) -> tuple[Path, Path]:
    """A tiny demo set and yolov5n with the seed posts' BAM (a plugin block) after its SPPF: their paths."""
    data = generate_demo_dataset(tmp_path / "demo", n_train=8, n_val=2, img_size=64)
    cfg = tmp_path / "bam.yaml"
    # the later layers renumbered: every layer's output is used, as DDP needs for synchronized gradients
    cfg.write_text(insert_block((CONFIGS / "models" / "yolov5n.yaml").read_text(), 9, "BAM", [1024]))
    return data, cfg


@pytest.mark.slow
def test_torchrun_ranks_load_the_same_plugin(tmp_path):
    data, cfg = bam_setup(tmp_path)
    env = clean_env(PYTHONPATH=str(ROOT), YOLO_ATTN_CACHE=str(tmp_path / "cache"))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
               "yolo_attn", "train", "--plugin", str(SEED_BLOCKS), "--cfg", str(cfg), "--data", str(data),
               "--epochs", "1", "--img", "64", "--batch", "8", "--workers", "0", "--device", "cpu", "--noplots",
               "--project", str(tmp_path / "runs")]
    result = run(command, tmp_path, env)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = f"plugins {SEED_BLOCKS} (sha256 {sha256_of(SEED_BLOCKS)[:12]})"
    assert f"rank 0: {loaded}" in result.stderr and f"rank 1: {loaded}" in result.stderr
    checkpoint = torch.load(tmp_path / "runs" / "exp" / "weights" / "last.pt", weights_only=True)
    assert checkpoint["plugins"] == {"BAM": {"plugin": str(SEED_BLOCKS), "sha256": sha256_of(SEED_BLOCKS)}}
