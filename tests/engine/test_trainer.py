"""The train loop on a tiny synthetic set: outputs, resume, fine-tuning, optimiser groups and schedules."""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import CONFIGS, ROOT
from yolo_attn import build_model
from yolo_attn.checkpoint import load_checkpoint, load_model, transfer_weights
from yolo_attn.data.synthetic import generate_demo_dataset
from yolo_attn.engine.optim import (
    EarlyStopping,
    ModelEMA,
    accumulation_steps,
    build_optimizer,
    lr_lambda,
    parameter_groups,
)
from yolo_attn.engine.trainer import KIND_DEFAULTS, TrainConfig, Trainer, train

TINY = {"img": 64, "batch": 4, "workers": 0, "seed": 0}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_demo")
    return str(generate_demo_dataset(root, n_train=8, n_val=4, img_size=64))


@pytest.fixture(autouse=True)
def label_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_ATTN_CACHE", str(tmp_path / "cache"))


def results_epochs(save_dir):
    with open(os.path.join(save_dir, "results.csv"), newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def test_train_writes_results_and_checkpoints(tiny_data, tmp_path):
    summary = train(cfg=str(CONFIGS / "models" / "yolov5n.yaml"), data=tiny_data, epochs=2, save_period=2,
                    project=str(tmp_path), **TINY)
    assert set(summary) >= {"map50", "map50_95", "precision", "recall", "epochs", "wall_s", "best", "last"}
    assert summary["epochs"] == 2
    save_dir = summary["save_dir"]
    assert results_epochs(save_dir) == [1, 2]  # epochs count from 1, as in the log
    for name in ("results.png", "labels.jpg", "train_batch0.jpg", "hyp.yaml", "opt.yaml"):
        assert os.path.isfile(os.path.join(save_dir, name)), name
    checkpoint = load_checkpoint(summary["last"])
    assert checkpoint["epoch"] == 1 and checkpoint["training"]["optimizer"] is not None and checkpoint["ema"] is not None
    assert checkpoint["training"]["augment_rng"]["bit_generator"] == "PCG64"
    # --save-period 2: a copy after every second epoch, here only after epoch 2 (the checkpoint's index 1)
    weights = os.path.join(save_dir, "weights")
    assert sorted(f for f in os.listdir(weights) if f.startswith("epoch")) == ["epoch2.pt"]
    assert load_checkpoint(os.path.join(weights, "epoch2.pt"))["epoch"] == 1
    loaded = load_model(summary["best"])
    assert loaded.names == ["rectangle", "ellipse", "triangle"] and loaded.model.nc == 3
    assert not logging.getLogger("yolo_attn").handlers  # the library leaves logging to its caller


def test_resume_after_interruption_matches_uninterrupted_run(tiny_data, tmp_path, monkeypatch):
    common = dict(cfg=str(CONFIGS / "models" / "yolov5n.yaml"), data=tiny_data, epochs=3, noplots=True, **TINY)
    full = train(project=str(tmp_path / "full"), **common)

    original = Trainer.train_one_epoch

    def dies_in_epoch_2(self, epoch, *args, **kwargs):
        if epoch == 2:
            raise KeyboardInterrupt  # stands in for a kill after epoch 1 was saved
        return original(self, epoch, *args, **kwargs)

    monkeypatch.setattr(Trainer, "train_one_epoch", dies_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train(project=str(tmp_path / "cut"), **common)
    monkeypatch.setattr(Trainer, "train_one_epoch", original)
    last = tmp_path / "cut" / "exp" / "weights" / "last.pt"
    assert load_checkpoint(last)["epoch"] == 1
    resumed = train(resume=str(last))
    assert resumed["epochs"] == 3 and results_epochs(resumed["save_dir"]) == [1, 2, 3]
    full_state = load_checkpoint(full["last"])
    resumed_state = load_checkpoint(resumed["last"])
    for key in ("state_dict", "ema"):
        for name, tensor in full_state[key].items():
            torch.testing.assert_close(resumed_state[key][name], tensor, msg=f"{key}.{name}")


def test_sigkill_then_resume_continues_results(tiny_data, tmp_path):
    """A real SIGKILL mid-run: the atomic last.pt resumes and results.csv rows are continued, not duplicated."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "yolo_attn", "train", "--cfg", str(CONFIGS / "models" / "yolov5n.yaml"),
               "--data", tiny_data, "--epochs", "6", "--img", "64", "--batch", "4", "--workers", "0", "--noplots",
               "--project", str(tmp_path)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = tmp_path / "exp" / "weights" / "last.pt"
    deadline = time.time() + 300
    while not last.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert last.exists()
    out = subprocess.run([sys.executable, "-m", "yolo_attn", "train", "--resume", str(last), "--json"],
                         env=env, capture_output=True, text=True, check=True)
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["epochs"] == 6 and results_epochs(tmp_path / "exp") == list(range(1, 7))


def test_fine_tune_transfers_matching_weights(tiny_data, tmp_path, caplog):
    source = build_model(CONFIGS / "models" / "yolov5n.yaml", nc=80)
    target = build_model(CONFIGS / "models" / "yolov5n.yaml", nc=3)
    count = transfer_weights(target, source.state_dict())
    # Everything but the 3 Detect output convs (weight + bias each): their shapes depend on nc.
    assert count == len(target.state_dict()) - 6
    torch.testing.assert_close(target.model[0].conv.weight, source.model[0].conv.weight)

    summary = train(cfg=str(CONFIGS / "models" / "yolov5n.yaml"), data=tiny_data, epochs=1, project=str(tmp_path), **TINY)
    with caplog.at_level(logging.INFO, logger="yolo_attn"):
        tuned = train(weights=summary["last"], data=tiny_data, epochs=1, project=str(tmp_path), noplots=True, **TINY)
    total = len(load_checkpoint(tuned["last"])["state_dict"])
    assert f"transferred {total}/{total} pretrained tensors from" in caplog.text


def test_parameter_groups_and_weight_decay():
    model = build_model(CONFIGS / "models" / "yolov5n.yaml", nc=3)
    biases, decayed, norms = parameter_groups(model)
    assert len(biases) + len(decayed) + len(norms) == len(list(model.parameters()))
    assert all(p.dim() == 1 for p in norms) and all(p.dim() == 4 for p in decayed)
    optimizer = build_optimizer(model, "SGD", lr=0.01, momentum=0.937, weight_decay=5e-4)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.0, 5e-4, 0.0]
    assert optimizer.param_groups[0]["nesterov"] is True
    adamw = build_optimizer(model, "AdamW", lr=0.001, momentum=0.9, weight_decay=5e-4)
    assert adamw.param_groups[0]["betas"] == (0.9, 0.999)


def test_lr_schedules_end_at_lrf():
    linear, cosine = lr_lambda(10, 0.01), lr_lambda(10, 0.01, cosine=True)
    assert linear(0) == 1.0 and linear(10) == pytest.approx(0.01) and linear(5) == pytest.approx(0.505)
    assert cosine(0) == pytest.approx(1.0) and cosine(10) == pytest.approx(0.01) and cosine(5) == pytest.approx(0.505)


def test_accumulation_ramps_to_nominal_batch():
    assert accumulation_steps(0, 100, 16) == 1
    assert accumulation_steps(100, 100, 16) == 4 and accumulation_steps(500, 100, 16) == 4
    assert accumulation_steps(500, 100, 128) == 1
    assert accumulation_steps(500, 100, 16, nominal=16) == 1 and accumulation_steps(60, 100, 8, nominal=32) == 3


def test_ema_decay_ramp_and_update():
    model = torch.nn.Linear(2, 2)
    ema = ModelEMA(model)
    assert ema.decay(1) == pytest.approx(0.9999 * (1 - math.exp(-1 / 2000)))
    with torch.no_grad():
        model.weight.fill_(1.0)
    before = ema.ema.weight.clone()
    ema.update(model)
    d = ema.decay(1)
    torch.testing.assert_close(ema.ema.weight, before * d + (1 - d) * 1.0)


def test_early_stopping_counts_epochs_without_improvement():
    stopper = EarlyStopping(patience=2)
    assert [stopper(e, f) for e, f in enumerate([0.1, 0.3, 0.2, 0.25, 0.4])] == [False, False, False, True, False]


def test_user_errors(tiny_data, tmp_path):
    from yolo_attn.errors import UserError

    with pytest.raises(UserError, match="nothing to resume"):
        summary = train(cfg=str(CONFIGS / "models" / "yolov5n.yaml"), data=tiny_data, epochs=1, project=str(tmp_path), **TINY)
        train(resume=summary["last"])
    with pytest.raises(UserError, match="not found"):
        train(cfg=str(CONFIGS / "models" / "yolov5n.yaml"), data=str(tmp_path / "missing.yaml"), **TINY)


def test_demo_defaults(monkeypatch, tmp_path):
    """No --data: the demo set is generated into the cache and yolov5n at 320 px is chosen."""
    monkeypatch.setenv("YOLO_ATTN_CACHE", str(tmp_path))
    from yolo_attn.data import synthetic

    monkeypatch.setattr(synthetic, "generate_demo_dataset", lambda: generate_demo_dataset(tmp_path / "demo", 4, 2, 64))
    trainer = Trainer(TrainConfig(project=str(tmp_path / "runs"), workers=0))
    trainer.setup()
    assert trainer.config.img == 320 and trainer.config.epochs == KIND_DEFAULTS["epochs"].demo
    assert trainer.config.optimizer == "AdamW" and trainer.hyp["nbs"] == 16
    assert trainer.config.cfg.endswith("yolov5n.yaml") and trainer.data.names == ["rectangle", "ellipse", "triangle"]


def test_close_mosaic_covers_last_epochs():
    trainer = Trainer(TrainConfig(epochs=10, close_mosaic=3, data="unused.yaml"))
    assert [e for e in range(10) if trainer.mosaic_closed(e)] == [7, 8, 9]
    trainer.config = dataclasses.replace(trainer.config, close_mosaic=0)
    assert not any(trainer.mosaic_closed(e) for e in range(10))
