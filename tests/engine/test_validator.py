"""evaluate() and ``yolo-attn val``: end-to-end box mapping, COCO ids, outputs, and YOLOv5 parity."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from tests.conftest import CONFIGS
from yolo_attn import build_model
from yolo_attn.cli import main
from yolo_attn.data.config import load_dataset_config
from yolo_attn.data.dataset import DetectionDataset, create_dataloader
from yolo_attn.engine.validator import JSON_KEYS, evaluate
from yolo_attn.errors import UserError
from yolo_attn.metrics import coco_evaluate

WEIGHTS = "weights/yolov5n-v6.1.pt"
# ultralytics/yolov5 val.py on COCO128, yolov5n v6.1, 640, batch 16, conf 0.001, iou 0.6 (2-core CPU)
REFERENCE = {"precision": 0.622, "recall": 0.488, "map50": 0.550, "map50_95": 0.351}
REFERENCE_COCO = {"AP": 0.3522, "AP50": 0.5527, "AP75": 0.3661}


class RecordingLoader:
    """A dataloader that remembers the targets of the batch it yielded last."""

    def __init__(self, loader):
        self.loader, self.dataset, self.targets = loader, loader.dataset, None

    def __iter__(self):
        for batch in self.loader:
            self.targets = batch[1].clone()
            yield batch

    def __len__(self) -> int:
        return len(self.loader)


class OracleModel(nn.Module):
    """Answers each batch with that batch's own labels as certain detections (pixels are ignored)."""

    def __init__(self, loader: RecordingLoader, nc: int):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))
        self.stride = torch.tensor([8.0, 16.0, 32.0])
        self.nc = nc
        self.loader = loader

    def forward(self, images: torch.Tensor):
        targets = self.loader.targets
        b, _, height, width = images.shape
        out = torch.zeros(b, max(len(targets), 1), 5 + self.nc)
        for slot, (i, cls, *xywh) in enumerate(targets.tolist()):
            out[int(i), slot, :4] = torch.tensor(xywh) * torch.tensor([width, height, width, height])
            out[int(i), slot, 4] = 1
            out[int(i), slot, 5 + int(cls)] = 1
        return out, []


@pytest.mark.parametrize("yaml_name", ["coco128.yaml", "coco128-coco.yaml"])
def test_labels_returned_as_detections_score_perfectly(shared, tmp_path, yaml_name):
    """Boxes go letterbox -> original pixels -> COCO json (with the json's own category ids) without loss.

    At 640 COCO images are not resized (long side 640), so the way back is exact; at other sizes
    YOLOv5's single gain for both axes (h / h0) shifts boxes by up to ~0.25 %, as upstream.
    """
    split = load_dataset_config(shared / "data/coco128" / yaml_name).splits["val"]
    loader = RecordingLoader(
        create_dataloader(DetectionDataset(split, 640, 32, rect=True, stride=32, pad=0.5, cache_dir=tmp_path), 32,
                          workers=0)
    )
    result = evaluate(
        OracleModel(loader, split.nc), dataloader=loader, iou_thres=1.0, save_dir=tmp_path / "run", save_json=True
    )
    assert result["images"] == 128 and result["instances"] == 929
    assert result["precision"] == pytest.approx(1) and result["recall"] == pytest.approx(1)
    assert result["map50"] == pytest.approx(0.995)  # YOLOv5's 101-point ceiling
    assert result["map50_95"] == pytest.approx(0.995)
    assert result["coco"]["AP50"] == pytest.approx(1) and result["coco"]["AP"] > 0.999  # boxes rounded to 1e-3 px
    predictions = json.loads((tmp_path / "run" / "predictions.json").read_text())
    assert len(predictions) == 929
    category_ids = {p["category_id"] for p in predictions}
    assert (max(category_ids) == 90) if yaml_name.endswith("-coco.yaml") else (max(category_ids) <= 79)


def test_evaluate_with_a_built_model_returns_the_documented_dict(shared, tmp_path):
    model = build_model(CONFIGS / "models/yolov5n.yaml", nc=80)
    losses = []

    def compute_loss(raw, targets):
        losses.append(len(raw))
        return torch.zeros(1), torch.tensor([1.0, 2.0, 3.0])

    model.train()
    result = evaluate(
        model,
        shared / "data/coco8/coco8.yaml",
        img_size=150,
        batch_size=4,
        workers=0,
        compute_loss=compute_loss,
        save_dir=tmp_path,
        plots=True,
        cache_dir=tmp_path,
    )
    assert model.training  # restored
    assert set(JSON_KEYS) <= set(result) and result["images"] == 4 and result["instances"] == 17
    assert result["loss"] == [1.0, 2.0, 3.0] and losses == [3]  # one batch, three detection levels
    assert set(result["coco"]) == {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR100"}
    assert set(result["speed_ms"]) == {"pre", "inference", "nms"} and len(result["maps"]) == 80
    assert all(0 <= result[k] <= 1 for k in ("precision", "recall", "map50", "map50_95"))
    assert {p.name for p in tmp_path.glob("*.png")} == {
        "PR_curve.png",
        "F1_curve.png",
        "P_curve.png",
        "R_curve.png",
        "confusion_matrix.png",
    }
    json.dumps(result)


def test_class_count_mismatch_is_a_user_error(shared, tmp_path):
    with pytest.raises(UserError, match="predicts 3 classes .* has 80"):
        evaluate(OracleModel(None, 3), shared / "data/coco8/coco8.yaml", cache_dir=tmp_path)


def test_unknown_coco_backend_fails_before_inference(shared):
    model = OracleModel(None, 80)  # would fail on its first batch
    with pytest.raises(UserError, match="unknown COCO backend 'nope'"):
        evaluate(model, shared / "data/coco8/coco8.yaml", coco_backend="nope")


def test_cli_val_prints_one_json_line_last_and_saves_coco_json(shared, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("YOLO_ATTN_CACHE", str(tmp_path / "cache"))
    argv = [
        "val",
        "--weights",
        str(shared / WEIGHTS),
        "--data",
        str(shared / "data/coco8/coco8.yaml"),
        "--img",
        "160",
        "--batch",
        "4",
        "--workers",
        "0",
        "--project",
        str(tmp_path),
        "--save-json",
        "--no-plots",
        "--json",
    ]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    assert list(result) == list(JSON_KEYS) and result["images"] == 4 and result["instances"] == 17
    assert any(line.split()[:3] == ["all", "4", "17"] for line in lines) and any(
        line.startswith("Speed:") for line in lines
    )
    predictions = json.loads((tmp_path / "exp" / "predictions.json").read_text())
    ground_truth = json.loads((tmp_path / "exp" / "ground_truth.json").read_text())
    assert {p["image_id"] for p in predictions} <= {36, 42, 49, 61} == {im["id"] for im in ground_truth["images"]}
    assert {c["id"] for c in ground_truth["categories"]} == set(range(80))


def test_cli_val_missing_dataset_is_one_error_line(tmp_path, capsys):
    (tmp_path / "d.yaml").write_text("path: nowhere\nval: images\nnames: [a]\ndownload: Fetch it.\n")
    assert main(["val", "--weights", "missing.pt", "--data", str(tmp_path / "d.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert "dataset folder not found" in err and err.endswith("Fetch it.") and len(err.splitlines()) == 1


@pytest.fixture(scope="module")
def yolov5n(shared):
    from yolo_attn.checkpoint import load_model

    return load_model(shared / WEIGHTS, fuse=True).model


@pytest.mark.slow
@pytest.mark.parametrize("yaml_name", ["coco128.yaml", "coco128-coco.yaml"])
def test_yolov5n_coco128_matches_yolov5_val(shared, yolov5n, tmp_path, yaml_name):
    result = evaluate(yolov5n, shared / "data/coco128" / yaml_name, img_size=640, batch_size=16, cache_dir=tmp_path)
    assert result["images"] == 128 and result["instances"] == 929
    for key, expected in REFERENCE.items():
        assert result[key] == pytest.approx(expected, abs=0.003), key
    for key, expected in REFERENCE_COCO.items():
        assert result["coco"][key] == pytest.approx(expected, abs=0.003), key


@pytest.mark.slow
def test_default_coco_backend_agrees_with_pycocotools_on_coco128(shared, yolov5n, tmp_path):
    """faster-coco-eval (the default) and pycocotools (the reference) give the same 12 numbers to 1e-6."""
    run = tmp_path / "run"
    reference = evaluate(yolov5n, shared / "data/coco128/coco128.yaml", save_dir=run, save_json=True,
                         coco_backend="pycocotools", cache_dir=tmp_path)["coco_stats"]
    ground_truth = json.loads((run / "ground_truth.json").read_text())
    predictions = json.loads((run / "predictions.json").read_text())
    image_ids = [image["id"] for image in ground_truth["images"]]
    default = coco_evaluate(ground_truth, predictions, image_ids)
    assert reference["AP"] == pytest.approx(REFERENCE_COCO["AP"], abs=1e-4) and len(default) == 12
    for key, value in reference.items():
        assert default[key] == pytest.approx(value, abs=1e-6), key
    assert coco_evaluate(ground_truth, predictions, image_ids, "faster") == default
