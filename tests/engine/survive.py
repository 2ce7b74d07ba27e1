"""Shared by the test_survive_* tests: a micro detector with a CBAM layer and a tiny synthetic data set, so that a
training run takes seconds, and readers of what a run left behind."""

from __future__ import annotations

import csv
from pathlib import Path

import torch
import yaml

from yolo_attn.checkpoint import load_checkpoint
from yolo_attn.data.synthetic import generate_demo_dataset
from yolo_attn.engine.trainer import Trainer

CBAM_LAYER = 3  # the index of the CBAM layer in MICRO_MODEL
MICRO_MODEL = {
    "nc": 3, "depth_multiple": 1.0, "width_multiple": 1.0,
    "anchors": [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]],
    "backbone": [[-1, 1, "Conv", [8, 3, 2]], [-1, 1, "Conv", [16, 3, 2]], [-1, 1, "Conv", [16, 3, 2]],
                 [-1, 1, "CBAM", [16, 4]], [-1, 1, "Conv", [16, 3, 2]], [-1, 1, "Conv", [16, 3, 2]]],
    "head": [[[3, 4, 5], 1, "Detect", ["nc", "anchors"]]],
}
TINY = {"img": 64, "batch": 4, "workers": 0, "seed": 0, "noplots": True, "noautoanchor": True}


def write_micro_model(folder: Path) -> str:
    path = folder / "micro-cbam.yaml"
    path.write_text(yaml.safe_dump(MICRO_MODEL, sort_keys=False))
    return str(path)


def tiny_dataset(folder: Path) -> str:
    return str(generate_demo_dataset(folder, n_train=8, n_val=4, img_size=64))


def results_column(save_dir: Path | str, column: str) -> list[str]:
    with open(Path(save_dir) / "results.csv", newline="") as f:
        return [row[column].strip() for row in csv.DictReader(f)]


def finite_checkpoint(path: Path | str) -> dict:
    """The checkpoint at ``path``, asserting its weights and EMA weights are finite."""
    checkpoint = load_checkpoint(path)
    for key in ("state_dict", "ema"):
        for name, tensor in (checkpoint[key] or {}).items():
            assert not tensor.is_floating_point() or torch.isfinite(tensor).all(), f"{path}: {key}.{name}"
    return checkpoint


def same_weights(a: dict, b: dict) -> bool:
    """Bit for bit: every tensor of the weights and EMA weights of two checkpoints (a finished run's stripped
    checkpoint has no separate EMA: both must lack it)."""
    return all((a[key] is None and b[key] is None) or (
        a[key] is not None and b[key] is not None and a[key].keys() == b[key].keys()
        and all(torch.equal(a[key][n], b[key][n]) for n in a[key])) for key in ("state_dict", "ema"))


def interrupt_at_epoch(monkeypatch, stop_epoch: int) -> None:
    """Make training raise KeyboardInterrupt as epoch ``stop_epoch`` begins (the earlier ones are saved)."""
    original = Trainer.train_one_epoch

    def dies(self, epoch, *args, **kwargs):
        if epoch == stop_epoch:
            raise KeyboardInterrupt
        return original(self, epoch, *args, **kwargs)

    monkeypatch.setattr(Trainer, "train_one_epoch", dies)
