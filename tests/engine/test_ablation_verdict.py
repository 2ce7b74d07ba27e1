"""The controls of ``ablate --controls``, fair latency, and what the verdicts and reports say (built from hand-made
runs, so no training)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from tests.conftest import CONFIGS
from yolo_attn.commands.ablate import json_result
from yolo_attn.engine.ablation import base_text
from yolo_attn.engine.ablation_report import markdown_report, write_html, write_reports
from yolo_attn.engine.ablation_summary import (
    AblationResult,
    PairRun,
    VariantCost,
    adjust,
    compare,
    planned_pairs,
    summarize,
    with_verdicts,
)
from yolo_attn.engine.ablation_variants import (
    ATTENTION,
    BASE,
    MATCHED,
    NEXT_SCALE,
    TOLERANCE,
    Variant,
    block_params,
    controls_for,
    largest_blocks,
    matched_controls,
    next_scale,
    plan_variants,
)
from yolo_attn.engine.latency import Latency, interleaved_latency
from yolo_attn.nn.builder import build_model


@pytest.mark.slow
@pytest.mark.parametrize("base", ["yolov5n.yaml", "yolo11n.yaml"])
def test_matched_control_has_the_parameters_of_the_attention_block(base):
    text = base_text(base)
    variants = plan_variants(text, ["CBAM", "GAMAttention", "DoubleAttention"], None, None, None)
    for variant in variants[1:]:
        controls, notes = matched_controls(text, [variants[0], variant])
        assert not notes and len(controls) == 1
        control = controls[0]
        assert control.kind == MATCHED and control.placement == variant.placement
        attention = block_params(build_model(yaml.safe_load(variant.yaml_text)), variant.placement)
        model = build_model(yaml.safe_load(control.yaml_text))
        plain = block_params(model, control.placement)
        assert abs(plain - attention) <= TOLERANCE * attention, (variant.name, plain, attention)
        assert type(model.model[control.placement[1] + 1]).__name__.endswith("Bottleneck")
        assert model.model[control.placement[1] + 1].add  # residual: the features pass through
    largest = largest_blocks(variants)  # one position, three blocks: the control matches the largest
    assert list(largest) == [variants[1].placement] and largest[variants[1].placement][1] == "GAMAttention-" + (
        "after9" if base == "yolov5n.yaml" else "after10")


def test_a_control_per_position_and_a_note_where_no_conv_is_small_enough():
    text = base_text("yolov5n.yaml")
    controls, notes = controls_for(text, {("after", 9): (50_000, "B"), ("after", 4): (5, "C")})
    assert [c.name for c in controls] == ["control-after9"] and "for the 50,000 of B" in controls[0].note
    assert notes == ["no matched control after 4: no Bottleneck comes within 10% of the 5 parameters of C"]
    plain = block_params(build_model(yaml.safe_load(controls[0].yaml_text)), ("after", 9))
    assert abs(plain - 50_000) <= TOLERANCE * 50_000


def test_next_scale_follows_each_familys_scales():
    v5, note = next_scale("yolov5n.yaml", base_text("yolov5n.yaml"))
    assert v5.kind == NEXT_SCALE and "YOLOv5's s multiples" in note
    built = yaml.safe_load(v5.yaml_text)
    assert (built["depth_multiple"], built["width_multiple"]) == (0.33, 0.5)
    assert built["backbone"] == yaml.safe_load(base_text("yolov5n.yaml"))["backbone"]
    v11, note = next_scale("yolo11n.yaml", base_text("yolo11n.yaml"))
    assert yaml.safe_load(v11.yaml_text)["scale"] == "s" and "scale s" in note
    v7, note = next_scale("yolov7-tiny.yaml", base_text("yolov7-tiny.yaml"))
    assert v7.yaml_text == (CONFIGS / "models" / "yolov7.yaml").read_text() and "YOLOv7's yolov7" in note
    for largest in ("yolov5x.yaml", "yolov7x.yaml", "yolo11x.yaml"):
        variant, note = next_scale(largest, base_text(largest))
        assert variant is None and note.startswith("no next scale"), largest
    custom = "depth_multiple: 0.5\nwidth_multiple: 0.6\nbackbone: []\nhead: []\n"
    assert next_scale("mine.yaml", custom)[0] is None


def test_latency_of_a_model_with_a_large_block_is_never_below_the_model_alone():
    """Interleaved on one fixed CPU thread, 10 runs each: the model with an extra large block always measures
    slower than the model alone, at the median and at the 90th percentile."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.SiLU())
    extended = nn.Sequential(*model, *(nn.Conv2d(16, 16, 7, padding=3) for _ in range(6)))
    result = interleaved_latency({"model": model, "model + block": extended}, torch.zeros(1, 3, 96, 96), runs=10,
                                 threads=1)
    alone, larger = result["model"], result["model + block"]
    assert alone.runs == larger.runs == 10
    assert larger.median_ms > alone.median_ms and larger.p90_ms > alone.p90_ms
    assert torch.get_num_threads() >= 1  # the thread setting is restored


# -- verdicts and reports from hand-made runs -----------------------------------------------------------------------

BLOCK = Variant("CBAM-after9", "after 9", "", ATTENTION, ("after", 9))
CONTROL = Variant("control-after9", "after 9", "", MATCHED, ("after", 9), note="Bottleneck 1x1-3x3, hidden width 3")
VARIANTS = [Variant("base", "-", "", BASE), BLOCK, CONTROL]


def runs(name: str, maps: list[float], folder: Path, failed: tuple[str, int] | None = None) -> list[PairRun]:
    return [PairRun(name, seed, folder / name / f"seed{seed}", None, error="killed") if (name, seed) == failed
            else PairRun(name, seed, folder / name / f"seed{seed}",
                         {"precision": 0.5, "recall": 0.5, "map50": m + 0.2, "map50_95": m, "APs": m / 2, "APm": m,
                          "APl": m * 1.5, "AR100": 0.6}, {"cat": (m, 40), "dog": (m - 0.01 * seed, 12)}, 10.0)
            for seed, m in enumerate(maps)]


def result_of(maps: dict[str, list[float]], images: int, folder: Path, image_sd: float = 0.002,
              failed: tuple[str, int] | None = None) -> AblationResult:
    """An ablation of ``maps`` (variant -> mAP50-95 per seed) whose runs score, on each bootstrap resample, their mAP
    plus noise shared by every run (so paired differences keep only the seeds' spread and a little image noise)."""
    cost = {"base": 1_000_000, "CBAM-after9": 1_008_000, "control-after9": 1_008_100}
    summaries = [summarize(v, VariantCost(cost[v.name], 1.0, Latency(10.0 + i, 12.0 + i, 20)),
                           runs(v.name, maps[v.name], folder, failed)) for i, v in enumerate(VARIANTS)]
    shared = np.random.default_rng(0).normal(0, 0.01, 1000)
    own = {}

    def image_maps(run: PairRun) -> np.ndarray:
        key = (run.variant, run.seed)
        if key not in own:
            own[key] = run.metrics["map50_95"] + shared + np.random.default_rng(len(own)).normal(0, image_sd, 1000)
        return own[key]

    by_name = {s.name: s for s in summaries}
    comparisons = [compare(by_name[v.name], by_name[r.name], image_maps) for v, r in planned_pairs(VARIANTS)]
    result = AblationResult(summaries, comparisons, tuple(range(len(maps["base"]))), images, 1000,
                            ["next scale: none"], "Cost: measured together")
    return AblationResult(summaries, with_verdicts(adjust(comparisons), summaries, result.too_small),
                          result.seeds, images, 1000, result.notes, result.cost_note)


def test_a_clear_gain_over_both_references_is_called_an_improvement(tmp_path):
    maps = {"base": [0.30, 0.31, 0.29, 0.30], "CBAM-after9": [0.35, 0.36, 0.34, 0.355],
            "control-after9": [0.30, 0.305, 0.295, 0.30]}
    result = result_of(maps, 200, tmp_path)
    assert result.family == 3 and not result.too_small
    block_vs_base, block_vs_control, control_vs_base = result.comparisons
    assert (block_vs_base.reference, block_vs_control.reference) == ("base", "control-after9")
    assert block_vs_base.finding == "improves" and block_vs_control.finding == "improves"
    assert block_vs_base.verdict.startswith("CBAM-after9: improves on the base (Δ mAP50-95 +0.051 [")
    assert "+0.8 % parameters, +1.0 ms (CPU median)." in block_vs_base.verdict
    assert "the matched control (control-after9)" in block_vs_control.verdict
    assert control_vs_base.finding == "no detectable effect"
    low, high = block_vs_base.simultaneous
    assert low > 0 and low < block_vs_base.estimate.low and high > block_vs_base.estimate.high  # wider: adjusted
    assert block_vs_base.holm_p >= block_vs_base.estimate.p_value
    assert block_vs_base.detectable is not None and block_vs_base.seeds_needed == 2
    assert block_vs_base.size_deltas["APs"].mean == pytest.approx(block_vs_base.estimate.mean / 2)
    assert block_vs_base.class_deltas[0][0] == "cat" and block_vs_base.class_deltas[0][2] == 40


def test_a_small_run_marks_nothing_significant_and_says_so(tmp_path):
    maps = {"base": [0.30, 0.31], "CBAM-after9": [0.45, 0.46], "control-after9": [0.30, 0.31]}
    result = result_of(maps, 20, tmp_path)
    assert result.too_small and {c.finding for c in result.comparisons} == {"too small to tell"}
    assert all("improves" not in c.verdict for c in result.comparisons)
    text = markdown_report(result)
    assert text.index("Too small to tell: 2 seed(s) and 20 validation images") < text.index("| variant |")


def test_a_failed_pair_leaves_its_seed_out_of_every_delta(tmp_path):
    maps = {"base": [0.30, 0.31, 0.29], "CBAM-after9": [0.35, 0.90, 0.34], "control-after9": [0.30, 0.31, 0.295]}
    result = result_of(maps, 200, tmp_path, failed=("CBAM-after9", 1))
    block_vs_base, block_vs_control, control_vs_base = result.comparisons
    assert block_vs_base.seeds == (0, 2) and block_vs_base.estimate.mean == pytest.approx(0.05)
    assert block_vs_control.seeds == (0, 2) and control_vs_base.seeds == (0, 1, 2)
    assert block_vs_base.finding == "too small to tell"  # two common seeds left: no verdict
    assert control_vs_base.finding == "no detectable effect"
    assert result.summaries[1].metrics["map50_95"] == pytest.approx((0.345, 0.00707), abs=1e-5)
    text = markdown_report(result)
    assert "| 2/3 (seed 1 FAILED) |" in text


def test_no_improvement_without_an_interval_excluding_zero(tmp_path):
    maps = {"base": [0.30, 0.31, 0.29], "CBAM-after9": [0.31, 0.30, 0.30], "control-after9": [0.30, 0.31, 0.295]}
    result = result_of(maps, 200, tmp_path)
    for c in result.comparisons:
        low, high = c.simultaneous
        assert low <= 0 <= high and c.finding == "no detectable effect", c.verdict


def test_the_reports_are_complete_and_the_html_is_self_contained(tmp_path):
    maps = {"base": [0.30, 0.31, 0.29], "CBAM-after9": [0.35, 0.36, 0.34], "control-after9": [0.30, 0.31, 0.295]}
    result = result_of(maps, 200, tmp_path)
    write_reports(result, tmp_path)
    md = (tmp_path / "ablation.md").read_text()
    for heading in ("## Verdicts", "## Main figure", "## Variants", "## Δ mAP50-95", "## Per object size",
                    "## Per class", "## Controls and cost", "## Accuracy against cost"):
        assert heading in md
    assert md.index("delta.png") < md.index("ablation.png") and "Too small" not in md
    assert "Holm p: over the 3 comparisons" in md and "simultaneous 98.33 % CI" in md
    assert "Bottleneck 1x1-3x3, hidden width 3" in md and "Cost: measured together" in md
    assert "cat +0.050 (n 40)" in md
    page = (tmp_path / "ablation.html").read_text()
    assert not re.search(r"(src|href)=\"(https?:)?//", page) and "<script" not in page
    figures = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(figures) == 2 and all(base64.b64decode(f).startswith(b"\x89PNG") for f in figures)
    assert "CBAM-after9: improves on the base" in page and "<table>" in page
    (tmp_path / "cam.png").write_bytes((tmp_path / "delta.png").read_bytes())  # as ablate --cam leaves it
    write_html(result, tmp_path)
    page = (tmp_path / "ablation.html").read_text()
    assert "Grad-CAM" in page and len(re.findall(r'src="data:image/png;base64,', page)) == 3
    document = json.loads(json.dumps(json_result(result, str(tmp_path)), allow_nan=False))  # strict JSON
    assert document["family"] == 3 and document["comparisons"][0]["finding"] == "improves"
    rows = (tmp_path / "ablation.csv").read_text().splitlines()
    assert sum(r.startswith("comparison,") for r in rows) == 3 and sum(r.startswith("run,") for r in rows) == 9
