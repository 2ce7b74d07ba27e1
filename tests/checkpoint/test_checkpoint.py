"""Our checkpoint format, the restricted import of upstream YOLOv5/YOLOv7 pickles, and load_model."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import torch
from torch import nn

from tests.conftest import CONFIGS
from yolo_attn import build_model
from yolo_attn.checkpoint import (
    SCHEMA_VERSION,
    UnsafeCheckpointError,
    load_checkpoint,
    load_model,
    make_checkpoint,
    save_checkpoint,
    strip_optimizer,
)
from yolo_attn.cli import main
from yolo_attn.errors import UserError
from yolo_attn.nn.builder import ModelConfigError

TINY_YAML = {
    "nc": 3,
    "depth_multiple": 1.0,
    "width_multiple": 1.0,
    "anchors": [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119]],
    "backbone": [[-1, 1, "Conv", [8, 3, 2]], [-1, 1, "Conv", [16, 3, 2]], [-1, 1, "C3", [16]],
                 [-1, 1, "Conv", [16, 3, 2]]],
    "head": [[[2, 3], 1, "Detect", ["nc", "anchors"]]],
}
NAMES = ["cat", "dog", "bird"]


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    model = build_model(TINY_YAML)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):  # non-trivial statistics and YOLOv5's BN settings
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.eps, m.momentum = 1e-3, 0.03
    return model.eval()


def test_checkpoint_round_trip_is_plain_and_exact(tmp_path):
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model(torch.rand(1, 3, 64, 64))[0].sum().backward()
    optimizer.step()
    path = tmp_path / "last.pt"
    training = {"optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state()}
    save_checkpoint(path, make_checkpoint(model, names=NAMES, ema=model, training=training, epoch=4,
                                          best_fitness=0.25, hyp={"lr0": 0.01}, train_args={"epochs": 5}))
    raw = torch.load(path, map_location="cpu", weights_only=True)  # no pickled classes
    assert raw["epoch"] == 4 and raw["names"] == NAMES and raw["training"]["optimizer"]["state"]
    assert raw["version"] and raw["date"] and torch.equal(raw["training"]["torch_rng"], torch.get_rng_state())
    assert raw["schema"] == SCHEMA_VERSION
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # the temporary file was renamed away

    loaded = load_model(path)
    assert loaded.source == "yolo-attn" and loaded.names == NAMES and not loaded.model.training
    assert loaded.checkpoint["train_args"] == {"epochs": 5}
    assert all(m.eps == 1e-3 for m in loaded.model.modules() if isinstance(m, nn.BatchNorm2d))
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(loaded.model(x)[0], model(x)[0])
        fused = load_model(path, fuse=True).model
        assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
        torch.testing.assert_close(fused(x)[0], model(x)[0], rtol=1e-4, atol=1e-4)


def test_make_checkpoint_refuses_non_plain_values():
    model = tiny_model()
    model.yaml = {**model.yaml, "activation": nn.SiLU()}
    with pytest.raises(TypeError, match="model_yaml.activation"):
        make_checkpoint(model, names=NAMES)
    with pytest.raises(TypeError, match="rng"):
        make_checkpoint(tiny_model(), names=NAMES, training={"rng": object()})


def test_missing_corrupt_and_foreign_files(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_model(tmp_path / "nope.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(UserError, match="corrupt.pt: not a readable PyTorch checkpoint"):
        load_model(corrupt)
    truncated = tmp_path / "truncated.pt"
    save_checkpoint(truncated, make_checkpoint(tiny_model(), names=NAMES))
    truncated.write_bytes(truncated.read_bytes()[:2000])
    with pytest.raises(UserError, match="truncated.pt"):
        load_model(truncated)
    partial = make_checkpoint(tiny_model(), names=NAMES)
    del partial["state_dict"]["model.0.conv.weight"]
    save_checkpoint(tmp_path / "partial.pt", partial)
    with pytest.raises(UserError, match="partial.pt: weights do not match .* missing model.0.conv.weight, unexpected"):
        load_model(tmp_path / "partial.pt")
    bare = tmp_path / "state_dict.pt"
    torch.save(tiny_model().state_dict(), bare)
    with pytest.raises(UserError, match="not a yolo-attn checkpoint"):
        load_model(bare)


class _Exploit:
    """Pickles as a call of ``target(*args)``."""

    def __init__(self, target, *args):
        self.target, self.args = target, args

    def __reduce__(self):
        return self.target, self.args


@pytest.mark.parametrize("make_call", [
    lambda marker: (os.system, f"touch {marker}"),
    lambda marker: (eval, f"open({str(marker)!r}, 'w')"),
    lambda marker: (subprocess.call, ["touch", str(marker)]),
    lambda marker: (subprocess.Popen, ["touch", str(marker)]),
    lambda marker: (exec, f"open({str(marker)!r}, 'w')"),
    lambda marker: (getattr, "text", "upper"),
], ids=["os.system", "eval", "subprocess.call", "subprocess.Popen", "exec", "getattr"])
def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path, make_call):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model": _Exploit(*make_call(marker)), "epoch": -1}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"evil\.pt: the pickle asks for .* not allowed"):
        load_model(path)
    assert not marker.exists()


@pytest.fixture
def upstream_module(monkeypatch):
    """A stand-in for YOLOv5's ``models.yolo`` so the test can write a pickle naming its classes."""
    module = types.ModuleType("models.yolo")

    class Model(nn.Module):
        def __init__(self, yaml: dict, layers: nn.Module):
            super().__init__()
            self.yaml, self.model, self.names = yaml, layers, list(NAMES)

    Model.__module__, Model.__qualname__ = "models.yolo", "Model"
    module.Model = Model
    monkeypatch.setitem(sys.modules, "models", types.ModuleType("models"))
    monkeypatch.setitem(sys.modules, "models.yolo", module)
    return module


def test_upstream_style_half_and_fused_checkpoints(tmp_path, upstream_module):
    reference = tiny_model()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = reference(x)[0]
    for fused in (False, True):
        model = build_model(TINY_YAML)
        model.load_state_dict(reference.state_dict())
        for ours, theirs in zip(model.modules(), reference.modules(), strict=True):
            if isinstance(ours, nn.BatchNorm2d):
                ours.eps, ours.momentum = theirs.eps, theirs.momentum
        if fused:
            model.fuse()
        path = tmp_path / f"upstream_fused{fused}.pt"
        torch.save({"model": upstream_module.Model(dict(TINY_YAML), model.model).half(), "ema": None, "epoch": -1},
                   path)
        loaded = load_model(path)
        assert loaded.source == "yolov5" and loaded.names == NAMES
        assert next(loaded.model.parameters()).dtype == torch.float32
        with torch.no_grad():
            torch.testing.assert_close(loaded.model(x)[0], expected, rtol=0.02, atol=0.05)  # weights went through fp16


def test_yolov7_training_checkpoint_uses_ema(tmp_path, upstream_module):
    yolov7_yaml = {**TINY_YAML, "head": [[[2, 3], 1, "IDetect", ["nc", "anchors"]]]}
    model, ema = build_model(yolov7_yaml), build_model(yolov7_yaml)
    with torch.no_grad():
        ema.head.m[0].bias.fill_(0.5)
    path = tmp_path / "yolov7_last.pt"
    torch.save({"epoch": 3, "best_fitness": np.array([0.42]), "training_results": "...",
                "model": upstream_module.Model(yolov7_yaml, model.model).half(),
                "ema": upstream_module.Model(yolov7_yaml, ema.model).half(), "updates": 10, "optimizer": None}, path)
    loaded = load_model(path)
    assert loaded.source == "yolov7"
    assert loaded.checkpoint["epoch"] == 3 and loaded.checkpoint["best_fitness"] == pytest.approx(0.42)
    assert torch.equal(loaded.model.head.m[0].bias, torch.full_like(loaded.model.head.m[0].bias, 0.5))
    assert "model.4.anchor_grid" in loaded.checkpoint["state_dict"]
    assert loaded.checkpoint["training"]["ema_updates"] == 10
    raw_bias, ema_bias = (loaded.checkpoint[k]["model.4.m.0.bias"] for k in ("state_dict", "ema"))
    assert not torch.equal(raw_bias, ema_bias)


@pytest.mark.parametrize("entry", [
    [-1, 1, "__import__('os').system('touch PWNED')", []],
    [-1, 1, "Conv", ["__import__('os').system('touch PWNED')", 3, 2]],
])
def test_upstream_yaml_naming_code_fails_cleanly(tmp_path, upstream_module, monkeypatch, entry):
    monkeypatch.chdir(tmp_path)
    evil_yaml = {**TINY_YAML, "backbone": [entry] + TINY_YAML["backbone"][1:]}
    path = tmp_path / "evil_yaml.pt"
    torch.save({"model": upstream_module.Model(evil_yaml, tiny_model().model)}, path)
    with pytest.raises(ModelConfigError, match="layer 0"):
        load_model(path)
    assert not (tmp_path / "PWNED").exists()


def test_official_yolov5n_release(shared):
    weights = shared / "weights" / "yolov5n-v6.1.pt"
    loaded = load_model(weights)
    assert loaded.source == "yolov5"
    assert len(loaded.names) == 80 and loaded.names[0] == "person" and loaded.names[5] == "bus"
    assert not loaded.model.training and next(loaded.model.parameters()).dtype == torch.float32
    assert sum(p.numel() for p in loaded.model.parameters()) == 1_872_157
    assert loaded.model.stride.tolist() == [8, 16, 32]
    assert loaded.checkpoint["batchnorm"]["model.0.bn"] == [1e-3, 0.03]
    assert loaded.checkpoint["hyp"]["lr0"] == 0.01
    fused = load_model(weights, fuse=True).model
    assert sum(p.numel() for p in fused.parameters()) == 1_867_405
    raw = load_checkpoint(weights)
    assert raw["source"] == "yolov5" and raw["state_dict"]["model.0.conv.weight"].dtype == torch.float32


def test_info_cli_on_release_weights(shared, capsys):
    assert main(["info", "--weights", str(shared / "weights" / "yolov5n-v6.1.pt"), "--json"]) == 0
    assert '"params": 1872157' in capsys.readouterr().out


def test_schema_1_checkpoints_are_upgraded(tmp_path):
    """A checkpoint written before the schema kept the training state at the top level still loads and resumes."""
    current = make_checkpoint(tiny_model(), names=NAMES, training={"optimizer": {"state": {}}, "wall_s": 3.0}, epoch=2)
    old = {k: v for k, v in current.items() if k not in ("schema", "training", "source")}
    old.update(optimizer={"state": {}}, wall_s=3.0, upstream="yolo-attn")
    save_checkpoint(tmp_path / "old.pt", old)
    upgraded = load_checkpoint(tmp_path / "old.pt")
    assert upgraded["schema"] == SCHEMA_VERSION and upgraded["source"] == "yolo-attn"
    assert upgraded["training"] == {"optimizer": {"state": {}}, "wall_s": 3.0} and upgraded["epoch"] == 2
    torch.testing.assert_close(upgraded["state_dict"], current["state_dict"])


def test_ultralytics_checkpoint_loads_through_the_restricted_unpickler(tmp_path, monkeypatch):
    """A pickle of Ultralytics' ``DetectionModel`` (anchor-free yolov8n): the yaml builds our model, keys load."""
    module = types.ModuleType("ultralytics.nn.tasks")

    class DetectionModel(nn.Module):
        def __init__(self, yaml: dict, layers: nn.Module):
            super().__init__()
            self.yaml, self.model, self.names = yaml, layers, {i: f"class{i}" for i in range(80)}

    DetectionModel.__module__, DetectionModel.__qualname__ = "ultralytics.nn.tasks", "DetectionModel"
    module.DetectionModel = DetectionModel
    for name in ("ultralytics", "ultralytics.nn"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "ultralytics.nn.tasks", module)
    torch.manual_seed(0)
    reference = build_model("yolov8n.yaml").eval()
    path = tmp_path / "yolov8n.pt"
    torch.save({"model": DetectionModel(dict(reference.yaml), reference.model).half(), "ema": None,
                "train_args": {"epochs": 1}, "date": "2026-01-01"}, path)
    loaded = load_model(path)
    assert loaded.source == "ultralytics" and loaded.names[3] == "class3"
    assert loaded.checkpoint["train_args"] == {"epochs": 1}
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x)[0], reference.float()(x)[0], rtol=0.02, atol=0.05)


def test_stripped_yolov5n_is_under_8_mb_and_predicts_as_its_ema(tmp_path):
    """A finished run's checkpoint (YOLOv5's strip_optimizer): EMA weights in float16, no optimizer; yolov5n with
    COCO's 80 classes goes from about 30 MB to under 8 MB (the official release is 3.9 MB)."""
    torch.manual_seed(0)
    model = build_model(CONFIGS / "models" / "yolov5n.yaml", nc=80)
    ema = copy.deepcopy(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    sum(o.sum() for o in model(torch.rand(1, 3, 64, 64))).backward()
    optimizer.step()  # momentum buffers: the optimizer state a resumable checkpoint carries
    full = make_checkpoint(model, names=[str(i) for i in range(80)], ema=ema, epoch=2,
                           training={"optimizer": optimizer.state_dict(), "wall_s": 12.5})
    save_checkpoint(tmp_path / "last.pt", full)
    save_checkpoint(tmp_path / "best.pt", strip_optimizer(full))
    assert (tmp_path / "last.pt").stat().st_size > 20e6
    assert (tmp_path / "best.pt").stat().st_size < 8e6
    stripped = load_checkpoint(tmp_path / "best.pt")
    assert stripped["ema"] is None and stripped["training"] == {"wall_s": 12.5} and stripped["epoch"] == 2
    loaded = load_model(tmp_path / "best.pt").model
    x = torch.rand(1, 3, 64, 64)
    torch.testing.assert_close(loaded(x)[0], ema.eval()(x)[0], rtol=0.02, atol=0.02)


def test_checkpoints_get_the_umask_permissions(tmp_path):
    """Checkpoints are ordinary files: 0666 less the umask (a temporary file from mkstemp would be 0600)."""
    previous = os.umask(0o002)
    try:
        save_checkpoint(tmp_path / "w.pt", make_checkpoint(tiny_model(), names=NAMES))
    finally:
        os.umask(previous)
    assert (tmp_path / "w.pt").stat().st_mode & 0o777 == 0o664
    assert [p.name for p in tmp_path.iterdir()] == ["w.pt"]  # no temporary file left
