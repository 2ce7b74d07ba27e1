"""`yolo-attn ablate` on a tiny synthetic set: seeds, the statistics, the files, resuming a stopped ablation and
identical conditions for every variant."""

from __future__ import annotations

import csv
import random
import re

import numpy as np
import pytest
import torch
import yaml

from tests.conftest import CONFIGS
from yolo_attn.checkpoint import load_checkpoint
from yolo_attn.cli import main
from yolo_attn.data.synthetic import generate_demo_dataset
from yolo_attn.engine.ablation import IMAGES_FILE, parse_seeds
from yolo_attn.engine.ablation_images import ImageStats
from yolo_attn.engine.ablation_variants import plan_variants
from yolo_attn.engine.trainer import TrainConfig, Trainer
from yolo_attn.errors import UserError
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


def test_too_few_bootstrap_resamples_is_a_user_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:  # argparse's exit, at parse time
        main(["ablate", "--blocks", "SE", "--bootstrap", "200", "--project", str(tmp_path)])
    assert exited.value.code == 2
    assert "--bootstrap: invalid value 200: must be at least 1000" in capsys.readouterr().err


def test_seeds_flag_takes_a_count_or_a_list():
    assert parse_seeds("3") == (0, 1, 2) and parse_seeds("0,5") == (0, 5) and parse_seeds("7,") == (7,)
    for bad in ("0", "x", "1,1", "-1,2"):
        with pytest.raises(UserError, match="--seeds"):
            parse_seeds(bad)


def test_model_initialisation_does_not_shift_the_data_rng(tiny_data, tmp_path):
    """A variant's extra layer draws more random numbers while it is built: after set-up every stream is
    where the base model's set-up leaves it."""
    text = (CONFIGS / "models" / "yolov5n.yaml").read_text()
    states = []
    for variant in plan_variants(text, ["CBAM"], [4], None, None):
        cfg = tmp_path / f"{variant.name}.yaml"
        cfg.write_text(variant.yaml_text)
        trainer = Trainer(TrainConfig(cfg=str(cfg), data=tiny_data, img=64, project=str(tmp_path),
                                      name=variant.name, seed=3))
        trainer.setup()
        states.append((random.getstate(), np.random.get_state()[1].tolist(), torch.get_rng_state()))
    assert states[0][:2] == states[1][:2]
    assert torch.equal(states[0][2], states[1][2])


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def comparison(rows, variant, reference="base"):
    return next(r for r in rows if r["row"] == "comparison" and r["variant"] == variant and r["reference"] == reference)


@pytest.mark.slow
def test_identity_variant_changes_nothing(tiny_data, tmp_path, capsys):
    """nn.Identity inserted: every seed trains exactly as the base (Δ = 0, same losses, the same detections on every
    validation image, so a zero-width bootstrap interval); seeds differ."""
    argv = ["ablate", "--blocks", "nn.Identity", "--args", "[]", "--after", "4", "--seeds", "2", "--data", tiny_data,
            "--epochs", "2", "--img", "64", "--batch", "4", "--workers", "0", "--project", str(tmp_path),
            "--name", "identity"]
    assert main(argv) == 0
    save_dir = tmp_path / "identity"
    rows = read_csv(save_dir / "ablation.csv")
    runs = [r for r in rows if r["row"] == "run"]
    assert [(r["variant"], r["seed"]) for r in runs] == [
        ("base", "0"), ("base", "1"), ("nn.Identity-after4", "0"), ("nn.Identity-after4", "1")]
    assert all(float(r["delta_map50_95"]) == 0.0 for r in runs)
    identity = comparison(rows, "nn.Identity-after4")
    for key in ("delta_map50_95", "ci_low", "ci_high", "image_ci_low", "image_ci_high", "seed_ci_low", "seed_ci_high"):
        assert float(identity[key]) == 0.0, key
    assert float(identity["p_value"]) == 1.0 and identity["n"] == "2"
    for seed in (0, 1):
        base = read_csv(save_dir / "base" / f"seed{seed}" / "results.csv")
        assert read_csv(save_dir / "nn.Identity-after4" / f"seed{seed}" / "results.csv") == base
        stats = [ImageStats.load(save_dir / v / f"seed{seed}" / IMAGES_FILE) for v in ("base", "nn.Identity-after4")]
        assert len(stats[0].conf) > 0 and (stats[0].conf == stats[1].conf).all()  # detections, the same ones
    first, second = (read_csv(save_dir / "base" / f"seed{s}" / "results.csv")[0]["train/box_loss"] for s in (0, 1))
    assert first != second  # another seed: another data order and augmentation
    out = capsys.readouterr().out
    assert "| nn.Identity-after4 | attention | after 4 |" in out and "Too small to tell" in out
    assert (save_dir / "ablation.html").is_file() and (save_dir / "delta.png").is_file()


@pytest.mark.slow
def test_a_failed_pair_is_marked_enters_no_delta_and_resume_trains_it(tiny_data, tmp_path, capsys, monkeypatch):
    argv = ["ablate", "--blocks", "SE", "--seeds", "0,1", "--data", tiny_data, "--epochs", "2", "--img", "64",
            "--batch", "4", "--workers", "0", "--project", str(tmp_path), "--name", "run"]
    original = Trainer.train_one_epoch

    def kill_se_seed1_in_its_second_epoch(self, epoch, *args, **kwargs):
        if epoch == 1 and "SE-after9/seed1" in self.save_dir.as_posix():
            raise RuntimeError("killed")
        return original(self, epoch, *args, **kwargs)

    monkeypatch.setattr(Trainer, "train_one_epoch", kill_se_seed1_in_its_second_epoch)
    assert main(argv) == 1  # the ablation finishes, reports, and says a run failed
    monkeypatch.setattr(Trainer, "train_one_epoch", original)
    captured = capsys.readouterr()
    assert "SE-after9 seed 1 FAILED (RuntimeError: killed)" in captured.err and "--resume" in captured.err
    save_dir = tmp_path / "run"
    rows = read_csv(save_dir / "ablation.csv")
    failed = next(r for r in rows if r["row"] == "run" and r["variant"] == "SE-after9" and r["seed"] == "1")
    assert failed["status"] == "failed" and failed["map50_95"] == "" and failed["delta_map50_95"] == ""
    se = comparison(rows, "SE-after9")
    assert se["n"] == "1" and se["seed_ci_low"] == ""  # seed 0 alone: no seed interval
    assert float(se["delta_map50_95"]) == pytest.approx(
        float(next(r for r in rows if r["row"] == "run" and r["variant"] == "SE-after9")["delta_map50_95"]))
    assert "1/2 (seed 1 FAILED)" in (save_dir / "ablation.md").read_text()
    last = save_dir / "SE-after9" / "seed1" / "weights" / "last.pt"
    wall_before_stop = load_checkpoint(last)["training"]["wall_s"]

    assert main([*argv, "--resume"]) == 0
    log = capsys.readouterr().err
    assert "base seed 0 already trained, skipping" in log and "SE-after9 seed 0 already trained, skipping" in log
    assert "resuming SE-after9 seed 1" in log
    rows = read_csv(save_dir / "ablation.csv")
    assert [(r["row"], r["variant"], r["seed"]) for r in rows] == [
        ("run", "base", "0"), ("run", "base", "1"), ("summary", "base", ""),
        ("run", "SE-after9", "0"), ("run", "SE-after9", "1"), ("summary", "SE-after9", ""),
        ("comparison", "SE-after9", "")]
    se_runs, se, delta = rows[3:5], rows[5], rows[6]
    assert all(r["status"] == "ok" for r in se_runs) and int(se["params"]) > int(rows[0]["params"]) and se["n"] == "2"
    assert float(se["map50_95"]) == pytest.approx(sum(float(r["map50_95"]) for r in se_runs) / 2)
    assert delta["n"] == "2" and float(delta["ci_low"]) <= float(delta["delta_map50_95"]) <= float(delta["ci_high"])
    assert 0.0 <= float(delta["holm_p"]) <= 1.0 and float(delta["p_value"]) <= float(delta["holm_p"])
    assert float(se_runs[1]["wall_s"]) > wall_before_stop  # the time before the stop is counted too
    assert [int(r["epoch"]) for r in read_csv(last.parent.parent / "results.csv")] == [1, 2]  # continued
    table = (save_dir / "ablation.md").read_text()
    assert "n = 2 seeds (0, 1) per variant, 4 validation images" in table and "Too small to tell" in table
    se_line = next(line for line in table.splitlines() if line.startswith("| SE-after9 | attention |"))
    assert se_line.count(" ± ") == 4 and "| 2/2 |" in se_line
    assert re.search(r"\| SE-after9 \| base \| 2 \| [+-]\d\.\d{4} \| \[[+-]\d\.\d{3}, [+-]\d\.\d{3}\]", table)
    assert (save_dir / "ablation.png").stat().st_size > 0
