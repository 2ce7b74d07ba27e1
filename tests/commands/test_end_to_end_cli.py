"""End-to-end heads (YOLO26, YOLOv10) from the command line: ``--nms-free`` on ``val``, ``predict`` and ``cam`` (and
refused, one line and exit 2, for a head that is not end-to-end), ``cam`` explaining yolo26n, and
``ablate --base yolo26n.yaml``."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from yolo_attn import build_model
from yolo_attn.checkpoint import make_checkpoint, save_checkpoint
from yolo_attn.cli import main
from yolo_attn.data.synthetic import generate_demo_dataset
from yolo_attn.engine import predictor, validator


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny demo-style dataset (2 val images at 64 px) and fresh yolo26n / yolo11n checkpoints for its classes."""
    root = tmp_path_factory.mktemp("e2e_cli")
    data = generate_demo_dataset(root / "demo", n_train=1, n_val=2, img_size=64)
    names = yaml.safe_load(data.read_text())["names"]
    weights = {}
    for cfg in ("yolo26n.yaml", "yolo11n.yaml"):
        torch.manual_seed(0)
        weights[cfg] = root / cfg.replace(".yaml", ".pt")
        save_checkpoint(weights[cfg], make_checkpoint(build_model(cfg, nc=len(names)), names=names))
    return {"data": data, "images": root / "demo" / "images" / "val", **weights}


@pytest.fixture(autouse=True)
def label_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_ATTN_CACHE", str(tmp_path / "cache"))


def _no_nms(*args, **kwargs):
    raise AssertionError("NMS called with --nms-free")


def last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_val_nms_free(files, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(validator, "non_max_suppression", _no_nms)
    code = main(["val", "--weights", str(files["yolo26n.yaml"]), "--data", str(files["data"]), "--img", "64",
                 "--workers", "0", "--no-plots", "--no-coco", "--nms-free", "--project", str(tmp_path), "--json"])
    assert code == 0 and last_json(capsys)["images"] == 2


def test_predict_nms_free_keeps_the_top_k(files, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(predictor, "non_max_suppression", _no_nms)
    code = main(["predict", "--weights", str(files["yolo26n.yaml"]), "--source", str(files["images"]), "--img", "64",
                 "--conf", "0", "--max-det", "5", "--nms-free", "--project", str(tmp_path), "--json"])
    assert code == 0
    images = last_json(capsys)["images"]
    assert len(images) == 2
    for detections in images.values():
        scores = [d["score"] for d in detections]
        assert len(detections) == 5 and scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("nms_free", [False, True])
def test_cam_explains_yolo26n(files, tmp_path, capsys, nms_free):
    image = sorted(files["images"].iterdir())[0]
    code = main(["cam", "--weights", str(files["yolo26n.yaml"]), "--source", str(image), "--img", "64", "--conf",
                 "0", "--dpi", "40", "--project", str(tmp_path), "--json"] + ["--nms-free"] * nms_free)
    assert code == 0
    summary = last_json(capsys)
    (figure,) = summary["figures"]
    row = summary["images"][str(image)]["yolo26n"]
    assert row["target"] == "all detections" and row["detections"] > 0
    assert set(row["layers"]) == {"16", "19", "22"}  # the layers feeding the head
    assert all(layer["mean_in"] is not None for layer in row["layers"].values())
    assert (tmp_path / "exp" / image.with_suffix(".png").name).stat().st_size > 0 and figure.endswith(".png")
    if nms_free:
        assert row["detections"] == 84  # every cell of a 64-px input (8x8 + 4x4 + 2x2): one-to-one, no NMS


@pytest.mark.parametrize("command", ["val", "predict", "cam"])
def test_nms_free_refused_for_other_heads(command, files, tmp_path, capsys):
    source = ["--data", str(files["data"])] if command == "val" else ["--source", str(files["images"])]
    project = tmp_path / "runs"
    code = main([command, "--weights", str(files["yolo11n.yaml"]), *source, "--img", "64", "--nms-free",
                 "--project", str(project)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [f"yolo-attn {command}: error: --nms-free: the model's head AnchorFreeDetect is not "
                                 "end-to-end; only YOLOv10's and YOLO26's heads give detections without NMS"]
    assert not project.exists()  # refused before any output folder


@pytest.mark.slow
def test_ablate_yolo26n_with_cbam(files, tmp_path, capsys):
    """One epoch, one seed of yolo26n and yolo26n + CBAM after its last backbone layer, with the variants' Grad-CAM."""
    code = main(["ablate", "--base", "yolo26n.yaml", "--blocks", "CBAM", "--data", str(files["data"]), "--img", "64",
                 "--epochs", "1", "--seeds", "1", "--batch", "2", "--workers", "0", "--cam", "1", "--noplots",
                 "--project", str(tmp_path), "--name", "run", "--json"])
    assert code == 0
    summary = last_json(capsys)
    assert [row["variant"] for row in summary["variants"]] == ["base", "CBAM-after10"]
    variant = yaml.safe_load((tmp_path / "run" / "models" / "CBAM-after10.yaml").read_text())
    assert variant["backbone"][-1][2] == "CBAM" and variant["end2end"] is True
    assert (tmp_path / "run" / "cam.png").stat().st_size > 0
