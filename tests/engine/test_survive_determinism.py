"""``train --deterministic``: the full flag (no warn_only), two runs bit-identical, and a layer calling an op with no
deterministic kernel named before training starts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import yaml

from tests.conftest import CONFIGS
from tests.engine.survive import CBAM_LAYER, MICRO_MODEL, TINY, same_weights, tiny_dataset, write_micro_model
from yolo_attn.checkpoint import load_checkpoint
from yolo_attn.engine.determinism import layer_determinism, op_without_deterministic_kernel
from yolo_attn.engine.trainer import Trainer, train
from yolo_attn.errors import UserError
from yolo_attn.nn.attention.cbam import CBAM
from yolo_attn.nn.builder import build_model

REFUSED_ON_CPU = "max_unpooling2d_forward_out"  # max_unpool2d: no deterministic kernel, on CPU too


@pytest.fixture(autouse=True)
def label_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_ATTN_CACHE", str(tmp_path / "cache"))


def unpooling_cbam(monkeypatch) -> None:
    """CBAM's output through a max-pool / max-unpool round trip (same shape), as a block calling an op PyTorch
    refuses under the deterministic flag."""
    original = CBAM.forward

    def forward(self, x):
        pooled, indices = F.max_pool2d(original(self, x), 2, return_indices=True)
        return F.max_unpool2d(pooled, indices, 2, output_size=x.shape[-2:])

    monkeypatch.setattr(CBAM, "forward", forward)


def test_layer_determinism_names_the_layer_and_the_op(monkeypatch):
    model = build_model(MICRO_MODEL).train()
    assert all(r.deterministic for r in layer_determinism(model, torch.rand(2, 3, 64, 64)))
    unpooling_cbam(monkeypatch)
    report = layer_determinism(model, torch.rand(2, 3, 64, 64))
    assert [(r.index, r.block, r.op) for r in report if not r.deterministic] == [(CBAM_LAYER, "CBAM", REFUSED_ON_CPU)]
    assert len(report) == len(model.model)  # the layers after the refused one are checked too
    assert not torch.are_deterministic_algorithms_enabled()  # the flag is restored
    assert op_without_deterministic_kernel(lambda: model.model[CBAM_LAYER](torch.rand(1, 16, 8, 8))) == REFUSED_ON_CPU


def test_train_deterministic_stops_before_training_naming_the_layer(monkeypatch, tmp_path):
    unpooling_cbam(monkeypatch)
    micro = {"cfg": write_micro_model(tmp_path), "data": tiny_dataset(tmp_path / "data"), **TINY}
    stepped = []
    monkeypatch.setattr(Trainer, "train_step", lambda self, *args: stepped.append(1))
    with pytest.raises(UserError, match=f"--deterministic: layer {CBAM_LAYER} \\(CBAM\\) calls {REFUSED_ON_CPU}: no "
                       "deterministic implementation on cpu"):
        train(**micro, epochs=1, deterministic=True, project=str(tmp_path / "runs"))
    assert not stepped and not torch.are_deterministic_algorithms_enabled()
    train(**micro, epochs=1, project=str(tmp_path / "runs"))  # without the flag the same model trains
    assert stepped


@pytest.mark.slow
def test_two_deterministic_runs_of_yolov5n_with_cbam_are_bit_identical(tmp_path, monkeypatch):
    model = yaml.safe_load((CONFIGS / "attention" / "yolov5s-CBAM.yaml").read_text())
    model["width_multiple"] = 0.25  # yolov5n's width: CBAM's [1024] scales to SPPF's 256 channels
    cfg = tmp_path / "yolov5n-CBAM.yaml"
    cfg.write_text(yaml.safe_dump(model, sort_keys=False))
    flags = []
    original = Trainer.fit

    def fit(self, *args):
        flags.append((torch.are_deterministic_algorithms_enabled(),
                      torch.is_deterministic_algorithms_warn_only_enabled()))
        return original(self, *args)

    monkeypatch.setattr(Trainer, "fit", fit)
    common = {"cfg": str(cfg), "data": tiny_dataset(tmp_path / "data"), **TINY, "epochs": 2, "deterministic": True}
    runs = [load_checkpoint(train(**common, project=str(tmp_path / f"run{i}"))["last"]) for i in range(2)]
    assert flags == [(True, False), (True, False)]  # in full, not as a warning
    assert same_weights(*runs)
    assert not torch.are_deterministic_algorithms_enabled()
