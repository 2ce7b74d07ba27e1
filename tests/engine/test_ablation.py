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
from yolo_attn.engine.ablation import parse_seeds, plan_variants
from yolo_attn.engine.ablation_report import RunResult, VariantCost, markdown_report, summarize
from yolo_attn.engine.ablation_stats import PairedDelta, paired_delta, t_central_probability, t_quantile
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


def test_seeds_flag_takes_a_count_or_a_list():
    assert parse_seeds("3") == (0, 1, 2) and parse_seeds("0,5") == (0, 5) and parse_seeds("7,") == (7,)
    for bad in ("0", "x", "1,1", "-1,2"):
        with pytest.raises(UserError, match="--seeds"):
            parse_seeds(bad)


def test_t_distribution_and_paired_test_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 4, 7, 30):
        assert t_quantile(0.95, df) == pytest.approx(stats.t.ppf(0.975, df), abs=1e-9)
        for t in (0.2, 1.0, 3.0):
            assert t_central_probability(t, df) == pytest.approx(1 - 2 * stats.t.sf(t, df), abs=1e-12)
    variant, base = [0.33, 0.35, 0.34, 0.36], [0.30, 0.31, 0.32, 0.33]
    delta = paired_delta(variant, base)
    reference = stats.ttest_rel(variant, base)
    assert delta.p_value == pytest.approx(reference.pvalue, abs=1e-12)
    interval = reference.confidence_interval(0.95)
    assert (delta.low, delta.high) == pytest.approx((interval.low, interval.high), abs=1e-12)
    assert delta.excludes_zero and paired_delta([0.3], [0.2]) is None
    assert paired_delta([0.3, 0.4], [0.3, 0.4]) == PairedDelta(2, 0.0, 0.0, 0.0, 1.0)


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


@pytest.mark.slow
def test_identity_variant_changes_nothing(tiny_data, tmp_path, capsys):
    """nn.Identity inserted: every seed trains exactly as the base (Δ = 0, same losses); seeds differ."""
    argv = ["ablate", "--blocks", "nn.Identity", "--args", "[]", "--after", "4", "--seeds", "2", "--data", tiny_data,
            "--epochs", "2", "--img", "64", "--batch", "4", "--workers", "0", "--project", str(tmp_path),
            "--name", "identity"]
    assert main(argv) == 0
    save_dir = tmp_path / "identity"
    runs = [r for r in read_csv(save_dir / "ablation.csv") if r["row"] == "run"]
    assert [(r["variant"], r["seed"]) for r in runs] == [
        ("base", "0"), ("base", "1"), ("nn.Identity-after4", "0"), ("nn.Identity-after4", "1")]
    assert all(float(r["delta_map50_95"]) == 0.0 for r in runs)
    for seed in (0, 1):
        base = read_csv(save_dir / "base" / f"seed{seed}" / "results.csv")
        assert read_csv(save_dir / "nn.Identity-after4" / f"seed{seed}" / "results.csv") == base
    first, second = (read_csv(save_dir / "base" / f"seed{s}" / "results.csv")[0]["train/box_loss"] for s in (0, 1))
    assert first != second  # another seed: another data order and augmentation
    assert "| nn.Identity-after4 | after 4 |" in capsys.readouterr().out


@pytest.mark.slow
def test_ablate_two_seeds_writes_statistics_and_resumes(tiny_data, tmp_path, capsys, monkeypatch):
    argv = ["ablate", "--blocks", "SE", "--seeds", "0,1", "--data", tiny_data, "--epochs", "2", "--img", "64",
            "--batch", "4", "--workers", "0", "--project", str(tmp_path), "--name", "run"]
    original = Trainer.train_one_epoch

    def stop_se_seed1_in_its_second_epoch(self, epoch, *args, **kwargs):
        if epoch == 1 and "SE-after9/seed1" in self.save_dir.as_posix():
            raise KeyboardInterrupt
        return original(self, epoch, *args, **kwargs)

    monkeypatch.setattr(Trainer, "train_one_epoch", stop_se_seed1_in_its_second_epoch)
    assert main(argv) == 130  # stopped half-way through the SE variant's second seed
    monkeypatch.setattr(Trainer, "train_one_epoch", original)
    capsys.readouterr()
    save_dir = tmp_path / "run"
    last = save_dir / "SE-after9" / "seed1" / "weights" / "last.pt"
    wall_before_stop = load_checkpoint(last)["training"]["wall_s"]

    assert main([*argv, "--resume"]) == 0
    log = capsys.readouterr().err
    assert "base seed 0 already trained, skipping" in log and "SE-after9 seed 0 already trained, skipping" in log
    assert "resuming SE-after9 seed 1" in log
    rows = read_csv(save_dir / "ablation.csv")
    assert [(r["row"], r["variant"], r["seed"]) for r in rows] == [
        ("run", "base", "0"), ("run", "base", "1"), ("summary", "base", ""),
        ("run", "SE-after9", "0"), ("run", "SE-after9", "1"), ("summary", "SE-after9", "")]
    se_runs, se = rows[3:5], rows[5]
    assert int(se["params"]) > int(rows[0]["params"]) and se["n"] == "2"
    assert float(se["map50_95"]) == pytest.approx(sum(float(r["map50_95"]) for r in se_runs) / 2)
    assert float(se["delta_ci_low"]) <= float(se["delta_map50_95"]) <= float(se["delta_ci_high"])
    assert 0.0 <= float(se["p_value"]) <= 1.0 and rows[2]["p_value"] == ""
    assert float(se_runs[1]["wall_s"]) > wall_before_stop  # the time before the stop is counted too
    assert [int(r["epoch"]) for r in read_csv(last.parent.parent / "results.csv")] == [1, 2]  # continued
    table = (save_dir / "ablation.md").read_text()
    assert table.startswith("n = 2 seeds (0, 1) per variant") and "paired t-test" in table
    se_line = next(line for line in table.splitlines() if line.startswith("| SE-after9 |"))
    assert se_line.count(" ± ") == 4 and re.search(r"\| [+-]\d\.\d{3} \[[+-]\d\.\d{3}, [+-]\d\.\d{3}\]", se_line)
    assert (save_dir / "ablation.png").stat().st_size > 0


def test_one_seed_gives_no_delta():
    cost = VariantCost(params=10, gflops=1.0, cpu_ms=1.0, gpu_ms=None)
    base = [RunResult("base", 0, 0.5, 0.5, 0.5, 0.3, 1.0)]
    summaries = [summarize("base", "-", cost, base, base),
                 summarize("SE", "after 9", cost, [RunResult("SE", 0, 0.5, 0.5, 0.5, 0.4, 1.0)], base)]
    table = markdown_report(summaries, (0,))
    assert "No confidence interval can be given" in table and "+0.100" not in table
    assert table.splitlines()[-1].endswith("| 0.400 | - | - | 1 |")
