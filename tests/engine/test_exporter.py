"""ONNX export: the fused model run in onnxruntime matches the torch model."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from torch import nn

from tests.nn.ultralytics_weights import seeded_state_dict
from yolo_attn import build_model
from yolo_attn.checkpoint import make_checkpoint, save_checkpoint
from yolo_attn.cli import main
from yolo_attn.engine.exporter import export_onnx
from yolo_attn.errors import UserError
from yolo_attn.nn.heads import configure_end_to_end

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


def matched_rows(ours: np.ndarray, theirs: np.ndarray) -> float:
    """The largest distance from a row of either (k, 6) detection set to its nearest twin in the other (near-tied
    scores may swap places between a fused and an unfused model)."""
    distance = np.abs(ours[:, None] - theirs[None]).max(-1)
    return float(max(distance.min(1).max(), distance.min(0).max()))


@pytest.mark.parametrize("cfg", ["yolo26n.yaml", "yolov10n.yaml"])
def test_end_to_end_heads_export_both_outputs(tmp_path, cfg):
    """Default: the one-to-many branch decoded for NMS (as Ultralytics 8.4 exports); --nms-free: the one-to-one
    top-k. onnxruntime gives the fused torch model's output, and the unfused model's (its best rows, for top-k)."""
    x = torch.rand(1, 3, 64, 96)  # 8x12 + 4x6 + 2x3 = 126 cells
    for nms_free in (False, True):
        model = build_model(cfg, nc=3).eval()
        shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        model.load_state_dict(seeded_state_dict(shapes))  # order-one activations: well-separated scores
        configure_end_to_end(model, 300, nms_free=nms_free)
        with torch.no_grad():
            unfused = model(x)[0][0].numpy()
            path = export_onnx(model, tmp_path / f"{nms_free}.onnx", shape=(64, 96), nms_free=nms_free)
            fused = model(x)[0].numpy()
        got = run_onnx(path, x)[0]
        assert got.shape == fused.shape == unfused.shape == ((126, 6) if nms_free else (126, 4 + 3))
        if nms_free:  # the tail holds near-tied scores (~1e-8) whose order any float difference may change
            assert np.all(got[:-1, 4] >= got[1:, 4])
            assert max(matched_rows(got[:20], fused[:20]), matched_rows(got[:20], unfused[:20])) < 1e-3
        else:
            assert max(np.abs(got - fused).max(), np.abs(got - unfused).max()) < 1e-3
        meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        assert json.loads(meta["nms_free"]) is nms_free


def test_dynamic_nms_free_graph_keeps_max_det(tmp_path):
    """Traced where the anchors outnumber max_det, the graph's top-k keeps max_det rows at every size that has as
    many anchors (docs/models.md); a smaller export size is refused."""
    model = build_model("yolo26n.yaml", nc=3).eval()
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    model.load_state_dict(seeded_state_dict(shapes))
    path = export_onnx(model, tmp_path / "dynamic.onnx", shape=(128, 128), dynamic=True, nms_free=True)  # 336
    x = torch.rand(2, 3, 160, 192)  # 630 anchors
    with torch.no_grad():
        expected = model(x).numpy()
    got = run_onnx(path, x)
    assert got.shape == expected.shape == (2, 300, 6)
    assert max(matched_rows(g[:20], e[:20]) for g, e in zip(got, expected, strict=True)) < 1e-3
    with pytest.raises(Exception, match="(?i)topk|k"):
        run_onnx(path, torch.rand(1, 3, 64, 64))  # 84 anchors < 300
    with pytest.raises(UserError, match=r"--dynamic --nms-free: 64x96 gives 126 anchors, fewer than the 300"):
        export_onnx(model, tmp_path / "small.onnx", shape=(64, 96), dynamic=True, nms_free=True)


def test_nms_free_export_refused_for_other_heads(tmp_path, capsys):
    model = build_model(small_yaml("Conv", "Detect"))
    for dynamic in (False, True):
        with pytest.raises(UserError, match="--nms-free: the model's head Detect is not end-to-end"):
            export_onnx(model, tmp_path / "x.onnx", (64, 64), dynamic, nms_free=True)
    weights = tmp_path / "small.pt"
    save_checkpoint(weights, make_checkpoint(build_model(small_yaml("Conv", "Detect")), names=["a", "b"]))
    assert main(["export", "--weights", str(weights), "--img", "64", "--nms-free"]) == 2
    assert capsys.readouterr().err.strip().startswith("yolo-attn export: error: --nms-free: the model's head Detect")
    assert not (tmp_path / "x.onnx").exists() and not weights.with_suffix(".onnx").exists()
