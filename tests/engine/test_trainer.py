"""The train loop on a tiny synthetic set: outputs, resume, fine-tuning, optimiser groups and schedules."""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import CONFIGS, ROOT
from tests.engine.survive import interrupt_at_epoch
from yolo_attn import build_model
from yolo_attn.checkpoint import load_checkpoint, load_model, transfer_weights
from yolo_attn.data.synthetic import generate_demo_dataset
from yolo_attn.engine.autobatch import auto_batch_size, batch_for_memory
from yolo_attn.engine.optim import (
    EarlyStopping,
    ModelEMA,
    accumulation_steps,
    build_optimizer,
    freeze_layers,
    lr_lambda,
    parameter_groups,
)
from yolo_attn.engine.trainer import KIND_DEFAULTS, TrainConfig, Trainer, train
from yolo_attn.errors import UserError

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
    # the finished run's last.pt and best.pt: EMA weights in float16, no optimizer (YOLOv5's strip_optimizer)
    checkpoint = load_checkpoint(summary["last"])
    assert checkpoint["epoch"] == 1 and checkpoint["ema"] is None and set(checkpoint["training"]) == {"wall_s"}
    assert checkpoint["state_dict"]["model.0.conv.weight"].dtype == torch.float16
    # --save-period 2: a copy after every second epoch, here only after epoch 2 (index 1), saved during training
    weights = os.path.join(save_dir, "weights")
    assert sorted(f for f in os.listdir(weights) if f.startswith("epoch")) == ["epoch2.pt"]
    during = load_checkpoint(os.path.join(weights, "epoch2.pt"))
    assert during["epoch"] == 1 and during["training"]["optimizer"] is not None and during["ema"] is not None
    assert during["training"]["augment_rng"]["bit_generator"] == "PCG64"
    assert os.path.getsize(summary["best"]) < os.path.getsize(os.path.join(weights, "epoch2.pt")) / 3
    umask = os.umask(0)
    os.umask(umask)
    assert all(os.stat(os.path.join(weights, f)).st_mode & 0o777 == 0o666 & ~umask for f in os.listdir(weights))
    loaded = load_model(summary["best"])
    assert loaded.names == ["rectangle", "ellipse", "triangle"] and loaded.model.nc == 3
    assert not logging.getLogger("yolo_attn").handlers  # the library leaves logging to its caller


def test_resume_after_interruption_matches_uninterrupted_run(tiny_data, tmp_path, monkeypatch):
    common = dict(cfg=str(CONFIGS / "models" / "yolov5n.yaml"), data=tiny_data, epochs=3, noplots=True, save_period=1,
                  **TINY)
    full = train(project=str(tmp_path / "full"), **common)

    original = Trainer.train_one_epoch

    def dies_in_epoch_2(self, epoch, *args, **kwargs):
        if epoch == 2:
            raise KeyboardInterrupt  # stands in for a kill after epoch 1 was saved
        return original(self, epoch, *args, **kwargs)

    monkeypatch.setattr(Trainer, "train_one_epoch", dies_in_epoch_2)
    last = tmp_path / "cut" / "exp" / "weights" / "last.pt"
    with pytest.raises(KeyboardInterrupt) as interrupted:
        train(project=str(tmp_path / "cut"), **common)
    assert str(interrupted.value) == f"interrupted; resume from the last checkpoint: yolo-attn train --resume {last}"
    monkeypatch.setattr(Trainer, "train_one_epoch", original)
    assert load_checkpoint(last)["epoch"] == 1
    resumed = train(resume=str(last))
    assert resumed["epochs"] == 3 and results_epochs(resumed["save_dir"]) == [1, 2, 3]
    # the last epoch's full checkpoints (last.pt is stripped once training completes)
    full_state = load_checkpoint(os.path.join(full["save_dir"], "weights", "epoch3.pt"))
    resumed_state = load_checkpoint(os.path.join(resumed["save_dir"], "weights", "epoch3.pt"))
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

    summary = train(cfg=str(CONFIGS / "models" / "yolov5n.yaml"), data=tiny_data, epochs=1, project=str(tmp_path),
                    **TINY)
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
    with pytest.raises(UserError, match="nothing to resume"):
        summary = train(cfg=str(CONFIGS / "models" / "yolov5n.yaml"), data=tiny_data, epochs=1, project=str(tmp_path),
                    **TINY)
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


@pytest.mark.slow
def test_resume_from_another_directory_and_after_the_data_moved(tiny_data, tmp_path, monkeypatch):
    """A run started with relative paths resumes from anywhere; a moved dataset is named with the --data fix."""
    start, elsewhere = tmp_path / "start", tmp_path / "elsewhere"
    shutil.copytree(os.path.dirname(tiny_data), start / "data")
    elsewhere.mkdir()
    monkeypatch.chdir(start)
    interrupt_at_epoch(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        train(cfg="yolov5n.yaml", data="data/demo.yaml", epochs=2, project="runs", noplots=True, **TINY)
    monkeypatch.undo()
    last = start / "runs" / "exp" / "weights" / "last.pt"
    saved = load_checkpoint(last)["train_args"]
    assert saved["data"] == str(start / "data" / "demo.yaml") and os.path.isabs(saved["cfg"])
    assert saved["save_dir"] == str(start / "runs" / "exp")

    monkeypatch.chdir(elsewhere)
    (start / "data").rename(tmp_path / "moved")
    moved = re.escape(f"the run's dataset YAML {start / 'data' / 'demo.yaml'} is not there any more; if it moved, "
                      f"give its new place: yolo-attn train --resume {last} --data NEW.yaml")
    with pytest.raises(UserError, match=moved):
        train(resume=str(last))
    resumed = train(resume=str(last), data=str(tmp_path / "moved" / "demo.yaml"))
    assert resumed["save_dir"] == str(start / "runs" / "exp") and results_epochs(resumed["save_dir"]) == [1, 2]
    assert not (elsewhere / "runs").exists()
    with pytest.raises(UserError, match="this run finished its 2 epochs; nothing to resume"):
        train(resume=str(last))


@pytest.mark.slow
def test_sigint_prints_where_to_resume_and_exits_130(tiny_data, tmp_path):
    """Ctrl-C (a real SIGINT to a real `python -m yolo_attn train`): exit 130, one line with the resume command."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "YOLO_ATTN_CACHE": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "yolo_attn", "-q", "train", "--cfg", "yolov5n.yaml", "--data", tiny_data,
               "--epochs", "500", "--img", "64", "--batch", "4", "--workers", "0", "--noplots", "--project",
               str(tmp_path)]
    # SIGINT at its default in the child whatever this process's (an ignored SIGINT would be inherited), and
    # more epochs than the child can finish between two polls of a loaded machine
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    last = tmp_path / "exp" / "weights" / "last.pt"
    deadline = time.time() + 300
    while not last.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip() and "epoch " not in line]
    assert lines == [f"yolo-attn train: interrupted; resume from the last checkpoint: yolo-attn train --resume {last}"]
    assert load_checkpoint(last)["training"]["optimizer"] is not None  # resumable, as the line says


def test_a_run_that_cannot_start_leaves_no_folder(tiny_data, tmp_path):
    """Errors found before training (here: a missing val folder) come before the run folder is made."""
    broken = tmp_path / "broken.yaml"
    broken.write_text(open(tiny_data).read().replace("images/val", "images/missing"))
    with pytest.raises(UserError, match="not found"):
        train(cfg=str(CONFIGS / "models" / "yolov5n.yaml"), data=str(broken), epochs=1, project=str(tmp_path / "runs"),
              **TINY)
    with pytest.raises(UserError, match="--freeze 30: the model has layers 0..24"):
        train(cfg=str(CONFIGS / "models" / "yolov5n.yaml"), data=tiny_data, freeze=(30,),
              project=str(tmp_path / "runs"), **TINY)
    assert not (tmp_path / "runs").exists()


def test_yolov5_training_options_in_one_run(tiny_data, tmp_path, caplog):
    """--freeze 10, --single-cls, --cache ram, --multi-scale and --image-weights together, on a 70 px request
    (rounded up to the stride before the run folder exists)."""
    with caplog.at_level(logging.INFO, logger="yolo_attn"):
        summary = train(cfg=str(CONFIGS / "models" / "yolov5n.yaml"), data=tiny_data, epochs=2, project=str(tmp_path),
                        noplots=True, save_period=1, freeze=(10,), single_cls=True, cache="ram", multi_scale=True,
                        image_weights=True, **{**TINY, "img": 70})
    assert "--img 70 is not a multiple of the max stride 32; using 96" in caplog.text
    assert "--freeze: layers 0..9 frozen" in caplog.text and "cached 8 images in RAM" in caplog.text
    weights = os.path.join(summary["save_dir"], "weights")
    first, second = (load_checkpoint(os.path.join(weights, f"epoch{e}.pt"))["state_dict"] for e in (1, 2))
    for name, tensor in first.items():
        if name.startswith("model.") and int(name.split(".")[1]) < 10 and not name.endswith(("running_mean",
                                                                                          "running_var",
                                                                                          "num_batches_tracked")):
            assert torch.equal(tensor, second[name]), name  # frozen: the optimizer never moved it
    assert not torch.equal(first["model.24.m.0.weight"], second["model.24.m.0.weight"])
    final = load_checkpoint(summary["best"])
    assert final["names"] == ["item"] and final["state_dict"]["model.24.m.0.weight"].shape[0] == 3 * 6  # nc 1
    assert final["train_args"]["img"] == 96 and final["train_args"]["freeze"] == (10,)


def test_multi_scale_sizes_are_stride_multiples_drawn_per_iteration():
    trainer = Trainer(TrainConfig(img=320, multi_scale=True, data="unused.yaml"))
    trainer.stride = 32
    images = torch.zeros(2, 3, 320, 256)
    shapes = [tuple(trainer.multi_scale(images, i).shape[2:]) for i in range(40)]
    assert all(h % 32 == 0 and w % 32 == 0 and 160 <= h <= 480 for h, w in shapes)
    assert len(set(shapes)) > 3 and shapes == [tuple(trainer.multi_scale(images, i).shape[2:]) for i in range(40)]


def test_freeze_layers_as_yolov5():
    model = build_model(CONFIGS / "models" / "yolov5n.yaml", nc=3)
    assert freeze_layers(model, (0,)) == [] and all(p.requires_grad for p in model.parameters())
    assert freeze_layers(model, (3, 1)) == [1, 3]
    frozen = {name.split(".")[1] for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"1", "3"}


def test_automatic_batch_size():
    # CPU: YOLOv5's default batch; CUDA: the line through the measured peaks, at 60% of the free memory
    assert auto_batch_size(build_model(CONFIGS / "models" / "yolov5n.yaml"), 64, torch.device("cpu")) == 16
    peaks = [100 + 10 * b for b in (1, 2, 4, 8, 16)]  # 100 bytes fixed, 10 per image
    assert batch_for_memory([1, 2, 4, 8, 16], peaks, free_bytes=1000) == 50  # (0.6 * 1000 - 100) / 10
    assert batch_for_memory([1], peaks[:1], free_bytes=1000) == 16  # one probe fits no line: the default
    assert batch_for_memory([1, 2, 4, 8, 16], peaks, free_bytes=10**9) == 16  # beyond 1024: the default
