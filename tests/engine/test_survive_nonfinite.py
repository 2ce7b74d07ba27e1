"""Non-finite losses and gradients: skipped, counted in results.csv, located by layer, and never saved."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.engine.survive import CBAM_LAYER, finite_checkpoint, results_column
from yolo_attn.engine.nonfinite import NonFiniteGuard, NonFiniteTrainingError, first_nonfinite_layer
from yolo_attn.engine.trainer import Trainer, train
from yolo_attn.nn.attention.cbam import CBAM
from yolo_attn.nn.builder import build_model


@pytest.fixture(autouse=True)
def label_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_ATTN_CACHE", str(tmp_path / "cache"))


def cbam_goes_wrong(monkeypatch, epoch: int, after_steps: int, output: bool = True, steps: int | None = None) -> None:
    """In training epoch ``epoch`` and after, from its ``after_steps + 1``-th training forward on (for ``steps`` of
    them, or for good), CBAM's output is NaN (``output``) or its gradient is (the forward pass staying finite)."""
    original_forward, original_epoch = CBAM.forward, Trainer.train_one_epoch
    calls = {"armed": False, "n": 0}

    def train_one_epoch(self, current, *args, **kwargs):
        calls["armed"] = current >= epoch
        return original_epoch(self, current, *args, **kwargs)

    def forward(self, x):
        y = original_forward(self, x)
        if not (self.training and calls["armed"]):
            return y
        calls["n"] += 1
        if calls["n"] <= after_steps or (steps is not None and calls["n"] > after_steps + steps):
            return y
        if output:
            return y * float("nan")
        y.register_hook(lambda grad: grad * float("nan"))
        return y

    monkeypatch.setattr(Trainer, "train_one_epoch", train_one_epoch)
    monkeypatch.setattr(CBAM, "forward", forward)


def test_a_block_that_turns_nan_is_named_and_its_weights_never_saved(micro, tmp_path, monkeypatch):
    cbam_goes_wrong(monkeypatch, epoch=1, after_steps=1)  # from the second step of epoch 1 on
    with pytest.raises(NonFiniteTrainingError) as caught:
        train(**micro, epochs=4, nonfinite_patience=2, project=str(tmp_path))
    message = str(caught.value)
    weights = tmp_path / "exp" / "weights"
    assert "training stopped at epoch 3, iteration 4: 2 optimizer steps in a row skipped for a non-finite loss" \
        in message
    assert f"first non-finite layer output: layer {CBAM_LAYER} (CBAM)" in message
    assert f"last good checkpoint: {weights / 'last.pt'} (epoch 2)" in message
    for name in ("last.pt", "best.pt"):
        assert finite_checkpoint(weights / name)["epoch"] <= 1
    assert results_column(tmp_path / "exp", "train/skipped_steps") == ["0", "1"]


def test_a_passing_nan_gradient_is_skipped_counted_and_training_goes_on(micro, tmp_path, monkeypatch):
    cbam_goes_wrong(monkeypatch, epoch=1, after_steps=0, output=False, steps=1)  # the first step of epoch 1
    summary = train(**micro, epochs=3, nonfinite_patience=2, project=str(tmp_path))
    assert results_column(summary["save_dir"], "train/skipped_steps") == ["0", "1", "0"]
    assert all(v != "nan" for v in results_column(summary["save_dir"], "train/box_loss"))
    assert finite_checkpoint(summary["last"])["epoch"] == 2


def test_a_skipped_step_leaves_batchnorm_statistics_as_they_were():
    model = build_model({**_one_conv_model(), "nc": 1}).train()
    guard = NonFiniteGuard(model, patience=5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    images = torch.full((2, 3, 32, 32), float("nan"))
    guard.before_forward()
    loss = sum(o.sum() for o in model(images))
    assert not guard.loss_is_finite(loss)
    guard.skip(optimizer, "loss", images, epoch=0, iteration=0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert (guard.consecutive, guard.epoch_skips, guard.total_skips) == (1, 1, 1)
    assert first_nonfinite_layer(model, images) == "layer 0 (Conv)"


def test_consecutive_skips_reset_by_a_good_step_and_stop_at_patience():
    model = build_model({**_one_conv_model(), "nc": 1}).train()
    guard = NonFiniteGuard(model, patience=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    assert not guard.gradients_are_finite(torch.tensor(float("inf"))) and guard.gradients_are_finite(torch.tensor(3.0))
    images = torch.zeros(1, 3, 32, 32)
    for iteration in range(3):  # skip, good step: never two skips in a row
        guard.before_forward()
        guard.skip(optimizer, "gradient", images, epoch=0, iteration=iteration)
        guard.stepped()
    guard.before_forward()
    guard.skip(optimizer, "gradient", images, epoch=0, iteration=5)
    with pytest.raises(NonFiniteTrainingError, match=r"iteration 6: 2 optimizer steps in a row .*\(5 in all\); "
                       "every layer output finite; last good checkpoint: none saved yet"):
        guard.skip(optimizer, "gradient", images, epoch=0, iteration=6)


def _one_conv_model() -> dict:
    return {"depth_multiple": 1.0, "width_multiple": 1.0, "anchors": [[10, 13, 16, 30, 33, 23]],
            "backbone": [[-1, 1, "Conv", [8, 3, 2]], [-1, 1, "Conv", [8, 3, 2]], [-1, 1, "Conv", [8, 3, 2]]],
            "head": [[[2], 1, "Detect", ["nc", "anchors"]]]}


def test_an_amp_overflow_is_skipped_and_the_scale_still_backs_off():
    """The trainer's skip path under AMP: unscale_, the clipped norm is infinite, no step, update() halves the
    scale as after a step the scaler skips itself (GradScaler on the CPU stands in for CUDA's)."""
    layer = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    guard = NonFiniteGuard(layer, patience=3)
    weight = layer.weight.detach().clone()
    scaler.scale(layer(torch.full((1, 2), 1e38)).sum()).backward()  # overflows once scaled
    scaler.unscale_(optimizer)
    norm = torch.nn.utils.clip_grad_norm_(layer.parameters(), max_norm=10.0)
    assert not guard.gradients_are_finite(norm)
    scaler.update()
    guard.skip(optimizer, "gradient", torch.zeros(1, 2), epoch=0, iteration=0)
    assert scaler.get_scale() == 2.0**15 and torch.equal(layer.weight, weight) and guard.epoch_skips == 1
