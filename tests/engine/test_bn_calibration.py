"""BatchNorm statistics re-estimated behind layers a structural transfer initialised fresh."""

from __future__ import annotations

import pytest
import torch
import yaml
from torch import nn

from tests.conftest import CONFIGS
from yolo_attn.checkpoint import make_checkpoint, save_checkpoint, transfer_pretrained
from yolo_attn.data.synthetic import generate_demo_dataset
from yolo_attn.engine.bn_calibration import (
    calibrate_behind,
    downstream_layers,
    image_batches,
    recalibrate_batchnorm,
    transparent_layers,
)
from yolo_attn.engine.trainer import TrainConfig, Trainer
from yolo_attn.nn.builder import build_model
from yolo_attn.nn.yaml_edit import default_block_args, insert_block

YOLOV5N = (CONFIGS / "models" / "yolov5n.yaml").read_text()


def variant(block: str, after: int, args: list | None = None) -> dict:
    args = default_block_args(yaml.safe_load(YOLOV5N), after, block) if args is None else args
    return yaml.safe_load(insert_block(YOLOV5N, after, block, args))


def batchnorm_state(model: nn.Module, layers: set[int]) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()
            if "running" in k and int(k.split(".")[1]) in layers}


@pytest.fixture(scope="module")
def cbam_after_9():
    """yolov5n with CBAM after layer 9, every other layer from a (random) yolov5n."""
    torch.manual_seed(0)
    source = build_model(yaml.safe_load(YOLOV5N))
    model = build_model(variant("CBAM", 9))
    report = transfer_pretrained(model, source.state_dict(), source.yaml)
    assert report.new_layers() == {10}
    return model


def test_downstream_layers_follow_the_from_indices(cbam_after_9):
    behind = downstream_layers(cbam_after_9, {10})
    # 11.. read 10 through the chain; the concats read 6 and 4 too, but nothing before 10 is behind it.
    assert behind == set(range(11, 26))
    assert downstream_layers(cbam_after_9, {5}) == set(range(6, 26)) - {5}
    assert downstream_layers(cbam_after_9, {25}) == set()


def test_identity_is_transparent_and_cbam_is_not():
    model = build_model(variant("nn.Identity", 4, []))
    images = torch.rand(1, 3, 64, 64)
    assert transparent_layers(model, {5}, images) == {5}
    assert transparent_layers(build_model(variant("CBAM", 4)), {5}, images) == set()
    assert model.train().training and transparent_layers(model, {5}, images) == {5}
    assert model.training  # its mode restored


def test_recalibration_is_the_average_of_the_batch_statistics(cbam_after_9):
    model = cbam_after_9
    batches = [torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(s)) for s in (1, 2)]
    norm = model.model[11].bn
    seen = []
    hook = norm.register_forward_hook(lambda m, inputs, out: seen.append(inputs[0].detach()))
    untouched = batchnorm_state(model, set(range(0, 11)))
    params = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k}
    model.train()
    assert recalibrate_batchnorm(model, set(range(11, 26)), batches) == 24
    hook.remove()
    means = torch.stack([x.mean((0, 2, 3)) for x in seen])
    variances = torch.stack([x.var((0, 2, 3), unbiased=True) for x in seen])
    torch.testing.assert_close(norm.running_mean, means.mean(0))
    torch.testing.assert_close(norm.running_var, variances.mean(0))
    assert norm.momentum == 0.03 and model.training  # restored
    for key, value in untouched.items():
        assert torch.equal(model.state_dict()[key], value)
    for key, value in params.items():
        assert torch.equal(model.state_dict()[key], value), key


def test_nothing_changes_behind_a_transparent_layer():
    source = build_model(yaml.safe_load(YOLOV5N))
    model = build_model(variant("nn.Identity", 4, []))
    transfer_pretrained(model, source.state_dict(), source.yaml)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert calibrate_behind(model, {5}, iter([torch.rand(2, 3, 64, 64)])) == 0
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


def test_image_batches_stop_at_the_limit():
    loader = [(torch.full((4, 3, 8, 8), 255, dtype=torch.uint8), None)] * 5
    sizes = [len(x) for x in image_batches(loader, 10, torch.device("cpu"))]
    assert sizes == [4, 4, 2]
    assert next(image_batches(loader, 1, torch.device("cpu"))).max() == 1.0


def test_trainer_recalibrates_behind_new_layers_only(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_ATTN_CACHE", str(tmp_path / "cache"))
    data = generate_demo_dataset(tmp_path / "tiny", n_train=8, n_val=4, img_size=64)
    source = build_model(yaml.safe_load(YOLOV5N), nc=3)
    save_checkpoint(tmp_path / "base.pt", make_checkpoint(source, names=["a", "b", "c"]))
    cfg = tmp_path / "cbam.yaml"
    cfg.write_text(yaml.safe_dump(variant("CBAM", 9)))
    pretrained = batchnorm_state(source, set(range(26)))

    def built(calibration: int) -> dict[str, torch.Tensor]:
        trainer = Trainer(TrainConfig(cfg=str(cfg), weights=str(tmp_path / "base.pt"), data=str(data), img=64,
                                      batch=4, workers=0, project=str(tmp_path), bn_calibration=calibration))
        trainer.setup()
        return batchnorm_state(trainer.model, set(range(27)))

    off, on = built(0), built(8)
    for key, value in pretrained.items():
        layer = int(key.split(".")[1])
        moved = f"model.{layer if layer <= 9 else layer + 1}.{key.split('.', 2)[2]}"
        assert torch.equal(off[moved], value), moved
        assert torch.equal(on[moved], value) == (layer <= 9), moved  # re-estimated behind CBAM (layer 10)
