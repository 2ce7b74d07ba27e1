"""ONNX export: the fused model run in onnxruntime matches the torch model."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from torch import nn

from yolo_attn import build_model
from yolo_attn.checkpoint import make_checkpoint, save_checkpoint
from yolo_attn.cli import main
from yolo_attn.engine.exporter import export_onnx
from yolo_attn.errors import UserError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def small_yaml(stem: str, head: str) -> dict:
    return {
        "nc": 2,
        "anchors": [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119]],
        "backbone": [[-1, 1, "Conv", [8, 3, 2]], [-1, 1, stem, [16, 3, 2]], [-1, 1, "C3", [16]],
                     [-1, 1, "Conv", [16, 3, 2]]],
        "head": [[[2, 3], 1, head, ["nc", "anchors"]]],
    }


def randomized(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics, so that fusing them is really exercised."""
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def run_onnx(path, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"images": x.numpy()})
    assert len(outputs) == 1
    return outputs[0]


@pytest.mark.parametrize("stem,head", [("Conv", "Detect"), ("RepConv", "IDetect")], ids=["yolov5", "yolov7"])
def test_onnx_matches_unfused_torch(tmp_path, stem, head):
    model = randomized(build_model(small_yaml(stem, head)))
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        expected = model(x)[0].numpy()
    path = export_onnx(model, tmp_path / "small.onnx", shape=(64, 96))
    assert model.head.export and not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    got = run_onnx(path, x)
    assert got.shape == expected.shape == (1, 3 * (16 * 24 + 8 * 12), 7)
    assert np.abs(got - expected).max() < 1e-4
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(meta["stride"]) == [4, 8] and json.loads(meta["names"]) == ["0", "1"]


def test_dynamic_export_runs_other_shapes(tmp_path):
    model = randomized(build_model(small_yaml("Conv", "Detect")))
    path = export_onnx(model, tmp_path / "dynamic.onnx", shape=(64, 64), dynamic=True)
    x = torch.rand(2, 3, 96, 32)
    with torch.no_grad():
        expected = model(x).numpy()  # the head is in export mode now: decoded tensor only
    assert np.abs(run_onnx(path, x) - expected).max() < 1e-4


def test_export_cli(tmp_path, capsys):
    weights = tmp_path / "small.pt"
    model = build_model(small_yaml("Conv", "Detect"))
    save_checkpoint(weights, make_checkpoint(model, names=["a", "b"]))
    assert main(["export", "--weights", str(weights), "--format", "onnx", "--img", "64", "--opset", "13"]) == 0
    out = weights.with_suffix(".onnx")
    assert out.is_file() and "opset 13" in capsys.readouterr().out
    assert onnx.load(str(out)).opset_import[0].version == 13
    assert main(["export", "--weights", str(weights), "--img", "60"]) == 2  # not a multiple of the stride
    assert "multiples of the model's stride 8" in capsys.readouterr().err


def test_missing_onnx_is_a_user_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes ``import onnx`` fail
    with pytest.raises(UserError, match=r"yolo-attn\[export\]"):
        export_onnx(build_model(small_yaml("Conv", "Detect")), "unused.onnx")
