"""`yolo-attn ablate` on a tiny synthetic set: the table, the files, and resuming a stopped ablation."""

from __future__ import annotations

import csv

import pytest
import yaml

from tests.conftest import CONFIGS
from yolo_attn.checkpoint import load_checkpoint
from yolo_attn.cli import main
from yolo_attn.data.synthetic import generate_demo_dataset
from yolo_attn.engine.ablation import plan_variants
from yolo_attn.engine.trainer import Trainer
from yolo_attn.nn.builder import build_model
from yolo_attn.nn.summary import count_params


@pytest.fixture(autouse=True)
def label_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_ATTN_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return str(generate_demo_dataset(tmp_path_factory.mktemp("tiny"), n_train=8, n_val=4, img_size=64))


def test_plan_places_each_block_at_each_position():
    text = (CONFIGS / "models" / "yolov5n.yaml").read_text()
    variants = plan_variants(text, ["CBAM", "SE"], [4, 9], None, None)
    assert [v.name for v in variants] == ["base", "CBAM-after4", "CBAM-after9", "SE-after4", "SE-after9"]
    base = count_params(build_model(yaml.safe_load(text)))
    for v in variants[1:]:
        model = build_model(yaml.safe_load(v.yaml_text))  # channels fitted: it builds
        assert count_params(model) > base
    replaced = plan_variants(text, ["SE"], None, 8, None)[1]
    assert replaced.name == "SE-replace8" and "SE, [1024, 16]" in replaced.yaml_text


def test_ablate_writes_table_and_resumes(tiny_data, tmp_path, capsys, monkeypatch):
    argv = ["ablate", "--blocks", "SE", "--data", tiny_data, "--epochs", "2", "--img", "64", "--batch", "4",
            "--workers", "0", "--project", str(tmp_path), "--name", "run"]
    original = Trainer.train_one_epoch

    def stop_se_in_its_second_epoch(self, epoch, *args, **kwargs):
        if epoch == 1 and "SE-after9" in str(self.save_dir):
            raise KeyboardInterrupt
        return original(self, epoch, *args, **kwargs)

    monkeypatch.setattr(Trainer, "train_one_epoch", stop_se_in_its_second_epoch)
    assert main(argv) == 130  # stopped half-way through the SE variant
    monkeypatch.setattr(Trainer, "train_one_epoch", original)
    capsys.readouterr()
    wall_before_stop = load_checkpoint(tmp_path / "run" / "SE-after9" / "weights" / "last.pt")["training"]["wall_s"]
    assert wall_before_stop > 0

    assert main([*argv, "--resume"]) == 0
    out = capsys.readouterr().out
    assert "base already trained, skipping" in out
    assert "resuming SE-after9" in out
    save_dir = tmp_path / "run"
    with open(save_dir / "ablation.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["variant"] for r in rows] == ["base", "SE-after9"]
    assert int(rows[1]["params"]) > int(rows[0]["params"])
    assert float(rows[0]["delta_map50_95"]) == 0.0
    assert float(rows[1]["wall_s"]) > wall_before_stop  # the time before the stop is counted too
    with open(save_dir / "SE-after9" / "results.csv", newline="") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0, 1]  # continued, not restarted or duplicated
    assert (save_dir / "ablation.md").read_text().startswith("| variant | position |")
    assert (save_dir / "ablation.png").stat().st_size > 0
