"""Ultralytics 8.4's optimiser choices: ``optimizer=auto``, MuSGD's parameter groups and its step against Ultralytics'
own MuSGD (tests/fixtures/ultralytics/musgd_steps.pt), and the trainer's ``--optimizer auto``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import ROOT
from yolo_attn import build_model
from yolo_attn.checkpoint import load_checkpoint
from yolo_attn.data.synthetic import generate_demo_dataset
from yolo_attn.engine.optim import MuSGD, apply_warmup, auto_iterations, auto_optimizer, build_optimizer
from yolo_attn.engine.trainer import TrainConfig, Trainer, train

FIXTURE = ROOT / "tests" / "fixtures" / "ultralytics" / "musgd_steps.pt"
KINDS = {"bias": "bias", "norm": "bn", "weight": "weight", "muon": "muon"}  # ours -> Ultralytics' group names

# Ultralytics 8.4.190's BaseTrainer.build_optimizer(DetectionModel(cfg), name, lr=0.01, momentum=0.9, decay=5e-4):
# per group (kind, lr, weight decay, tensors, elements), sorted.
ULTRALYTICS_GROUPS = {
    ("yolo26n.yaml", "MuSGD"): [
        ("bias", 0.01, 0.0, 96, 7472), ("bias", 0.03, 0.0, 30, 2816), ("bn", 0.01, 0.0, 90, 7448),
        ("bn", 0.03, 0.0, 24, 2336), ("muon", 0.01, 0.0005, 96, 2391344), ("muon", 0.03, 0.0005, 30, 160864),
        ("weight", 0.01, 0.0005, 0, 0), ("weight", 0.03, 0.0005, 0, 0)],
    ("yolo26n.yaml", "AdamW"): [
        ("bias", 0.01, 0.0, 126, 10288), ("bn", 0.01, 0.0, 114, 9784), ("weight", 0.01, 0.0005, 126, 2552208)],
    ("yolo11n.yaml", "MuSGD"): [
        ("bias", 0.01, 0.0, 72, 6856), ("bias", 0.03, 0.0, 15, 1408), ("bn", 0.01, 0.0, 69, 6664),
        ("bn", 0.03, 0.0, 12, 1168), ("muon", 0.01, 0.0005, 73, 2527552), ("muon", 0.03, 0.0005, 15, 80432),
        ("weight", 0.01, 0.0005, 0, 0), ("weight", 0.03, 0.0005, 0, 0)],
}


@pytest.fixture(autouse=True)
def label_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_ATTN_CACHE", str(tmp_path / "cache"))


def test_auto_picks_adamw_for_short_runs_and_musgd_for_long_ones():
    assert auto_iterations(118_287, 16, 64, 5) == 1849 * 5  # COCO at batch 16: steps of the nominal batch
    assert auto_iterations(100, 128, 64, 3) == 3
    short = auto_optimizer(80, 10_000)
    assert (short.name, short.lr, short.momentum) == ("AdamW", 0.000119, 0.9)  # round(0.01 / 84, 6)
    assert auto_optimizer(3, 300).lr == 0.001429
    long = auto_optimizer(80, 10_001)
    assert (long.name, long.lr, long.momentum) == ("MuSGD", 0.01, 0.9)


@pytest.mark.parametrize("cfg,name", ULTRALYTICS_GROUPS)
def test_parameter_groups_match_ultralytics(cfg, name):
    optimizer = build_optimizer(build_model(cfg), name, lr=0.01, momentum=0.9, weight_decay=5e-4)
    groups = sorted((KINDS[g["param_group"]], g["lr"], g["weight_decay"], len(g["params"]),
                     sum(p.numel() for p in g["params"])) for g in optimizer.param_groups)
    assert groups == ULTRALYTICS_GROUPS[cfg, name]


def test_musgd_steps_match_ultralytics():
    """Two steps on seeded tensors (a 4-D filter, a wide and a tall matrix in a Muon group with weight decay, a bias
    in a plain group), equal to Ultralytics' MuSGD(muon=0.2, sgd=1.0)."""
    reference = torch.load(FIXTURE, weights_only=True)
    params = {k: v.clone().requires_grad_(True) for k, v in reference["initial"].items()}
    groups = [{**{k: v for k, v in g.items() if k != "names"}, "params": [params[n] for n in g["names"]]}
              for g in reference["groups"]]
    optimizer = MuSGD(groups, muon=reference["muon"], sgd=reference["sgd"])
    for grads, expected in zip(reference["grads"], reference["after"], strict=True):
        for key, p in params.items():
            p.grad = grads[key].clone()
        optimizer.step()
        for key, p in params.items():
            torch.testing.assert_close(p.detach(), expected[key], rtol=1e-6, atol=1e-7)


def test_musgd_without_muon_is_nesterov_sgd():
    weight = torch.nn.Parameter(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    twin = torch.nn.Parameter(weight.detach().clone())
    ours = MuSGD([{"params": [weight], "use_muon": False}], lr=0.1, momentum=0.9, weight_decay=0.01)
    sgd = torch.optim.SGD([twin], lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True)
    for step in range(3):
        weight.grad, twin.grad = torch.full((2, 2), float(step + 1)), torch.full((2, 2), float(step + 1))
        ours.step()
        sgd.step()
    torch.testing.assert_close(weight, twin)


def test_warmup_finds_every_bias_group():
    optimizer = build_optimizer(build_model("yolo26n.yaml"), "MuSGD", lr=0.01, momentum=0.9)
    for group in optimizer.param_groups:
        group["initial_lr"] = group["lr"]
    hyp = {"warmup_bias_lr": 0.1, "warmup_momentum": 0.8, "momentum": 0.937}
    apply_warmup(optimizer, 0, 100, 1.0, hyp)
    assert [g["lr"] for g in optimizer.param_groups if g["param_group"] == "bias"] == [0.1, 0.1]
    assert all(g["lr"] == 0.0 for g in optimizer.param_groups if g["param_group"] != "bias")
    assert all(g["momentum"] == 0.8 for g in optimizer.param_groups)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return str(generate_demo_dataset(tmp_path_factory.mktemp("tiny"), n_train=8, n_val=4, img_size=64))


@pytest.mark.parametrize("cfg,images,expected", [
    ("yolo26n.yaml", 8, ("AdamW", 0.001429, 0.9)),  # nc 3: round(0.01 / 7, 6)
    ("yolo26n.yaml", 640_001, ("MuSGD", 0.01, 0.9)),  # 10,001 steps of the nominal 64 images
    ("yolov5n.yaml", 640_000, ("SGD", 0.01, 0.937)),  # YOLOv5's schema: its SGD and the hyp's numbers
])
def test_auto_by_schema(cfg, images, expected, tiny_data, tmp_path):
    trainer = Trainer(TrainConfig(cfg=cfg, data=tiny_data, epochs=1, img=64, workers=0, project=str(tmp_path)))
    trainer.setup()
    trainer.make_run_dir()  # where choose_optimizer records its choice (the run folder, never the working directory)
    assert trainer.config.optimizer == "auto"
    assert trainer.choose_optimizer(images) == expected
    saved = yaml.safe_load((trainer.save_dir / "opt.yaml").read_text())
    hyp = yaml.safe_load((trainer.save_dir / "hyp.yaml").read_text())
    assert trainer.config.optimizer == saved["optimizer"] == expected[0]
    assert (hyp["lr0"], hyp["warmup_bias_lr"]) == ((expected[1], 0.0) if cfg.startswith("yolo26") else (0.01, 0.1))


@pytest.mark.slow  # MuSGD's bfloat16 Newton-Schulz steps are slow on a CPU (~30 s a step for yolo26n on 2 cores)
def test_yolo26n_trains_with_musgd(tiny_data, tmp_path):
    summary = train(cfg="yolo26n.yaml", data=tiny_data, epochs=1, img=64, batch=4, workers=0, optimizer="MuSGD",
                    project=str(tmp_path), noplots=True, save_period=1)
    weights = Path(summary["save_dir"]) / "weights"  # epoch1.pt keeps the optimizer (the final last.pt is stripped)
    optimizer = load_checkpoint(weights / "epoch1.pt")["training"]["optimizer"]
    groups = optimizer["param_groups"]
    assert [g["param_group"] for g in groups] == ["bias", "bias", "weight", "weight", "norm", "norm", "muon", "muon"]
    assert any("muon_momentum" in state for state in optimizer["state"].values())
