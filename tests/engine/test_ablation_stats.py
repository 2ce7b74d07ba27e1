"""The ablation's statistics against textbook values, and the bootstrap over validation images: exact on identical
predictions, equal to YOLOv5's mAP on the images it weights, and covering a known difference at about the nominal
rate."""

from __future__ import annotations

import math

import numpy as np
import pytest

from yolo_attn.engine.ablation_images import ImageStats
from yolo_attn.engine.ablation_stats import (
    PairedDelta,
    combine,
    holm,
    minimum_detectable_effect,
    one_sided_quantile,
    paired_delta,
    percentile_interval,
    resample_counts,
    seeds_needed,
    t_central_probability,
    t_quantile,
)
from yolo_attn.metrics import DetectionStats, ap_per_class


def test_t_quantiles_match_the_printed_tables():
    # two-sided 95 % critical values and one-sided 80 % quantiles of Student's t (any statistics textbook's table)
    for df, value in ((1, 12.706), (2, 4.303), (4, 2.776), (10, 2.228), (30, 2.042)):
        assert t_quantile(0.95, df) == pytest.approx(value, abs=5e-4)
    for df, value in ((2, 1.061), (9, 0.883), (30, 0.854)):
        assert one_sided_quantile(0.8, df) == pytest.approx(value, abs=5e-4)
    assert t_quantile(0.95, math.inf) == pytest.approx(1.959964, abs=1e-6)  # the normal distribution
    assert t_quantile(0.95, 4.7) == t_quantile(0.95, 4)  # a Satterthwaite df is rounded down (conservative)


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


def test_holm_adjusts_step_down():
    # sorted p 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 -> 0.02, 0.03, 0.06, 0.04 -> made monotone: 0.06 for the last
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == [1.0, 1.0] and holm([0.02]) == [0.02] and holm([]) == []


def test_power_matches_the_sample_size_tables():
    # paired t-test, effect 1 sd, alpha 0.05 two-sided, power 0.8: 10 pairs (as G*Power gives)
    assert minimum_detectable_effect(1.0, 10) == pytest.approx((2.2621572 + 0.8834039) / math.sqrt(10), abs=1e-5)
    assert seeds_needed(1.0, 1.0) == 10 and seeds_needed(-1.0, 1.0) == 10
    assert minimum_detectable_effect(1.0, 9) > 1.0 >= minimum_detectable_effect(1.0, 10)
    assert seeds_needed(0.5, 1.0) == 34  # G*Power: dz 0.5 -> 34
    assert seeds_needed(1e-4, 1.0) is None and seeds_needed(0.0, 1.0) is None and seeds_needed(0.1, 0.0) == 2
    assert minimum_detectable_effect(0.01, 3) == pytest.approx((4.302653 + 1.060660) * 0.01 / math.sqrt(3), abs=1e-6)


def test_combined_interval_adds_the_two_variances():
    seeds = [0.010, 0.030, 0.020]
    images = np.random.default_rng(0).normal(0.02, 0.005, 4000)
    e = combine(seeds, images)
    seed_var, image_var = np.var(seeds, ddof=1) / 3, np.var(images, ddof=1)
    assert e.mean == pytest.approx(0.02) and e.error == pytest.approx(math.sqrt(seed_var + image_var))
    assert e.df == pytest.approx((seed_var + image_var) ** 2 / (seed_var ** 2 / 2))  # Welch-Satterthwaite
    assert e.high - e.mean == pytest.approx(t_quantile(0.95, e.df) * e.error)
    assert e.seeds == paired_delta(seeds, [0, 0, 0]) and e.images == percentile_interval(images)
    assert e.images[1] - e.images[0] < e.high - e.low  # wider than the images' own interval
    one = combine([0.02], images)  # one seed: the images alone, normal quantiles
    assert one.seeds is None and one.df == math.inf
    half = 1.959964 * images.std(ddof=1)
    assert (one.low, one.high) == pytest.approx((0.02 - half, 0.02 + half))
    wider = e.interval(1 - 0.05 / 4)
    assert wider[0] < e.low and wider[1] > e.high


def test_zero_differences_give_a_zero_width_interval():
    e = combine([0.0, 0.0, 0.0], np.zeros(1000))
    assert (e.mean, e.low, e.high, e.p_value, e.images) == (0.0, 0.0, 0.0, 1.0, (0.0, 0.0))
    assert e.interval(0.99) == (0.0, 0.0)


def test_resamples_are_seeded_draws_of_every_image():
    counts = resample_counts(50, 200, seed=3)
    assert counts.shape == (200, 50) and (counts.sum(1) == 50).all()
    assert (counts == resample_counts(50, 200, seed=3)).all() and not (counts == resample_counts(50, 200, seed=4)).all()


@pytest.mark.parametrize("seed_sd, image_sd", [(0.01, 0.1), (0.03, 0.02)], ids=["images-dominate", "seeds-dominate"])
def test_bootstrap_intervals_cover_a_known_difference_at_the_nominal_rate(seed_sd, image_sd):
    """Repeated seeded draws of a paired per-image difference with true mean 0.03: the percentile interval of the
    images covers it about 95 % of the time; with three seeds adding training noise, the combined interval too."""
    rng = np.random.default_rng(7)
    n, true_delta, draws = 80, 0.03, 300
    image_hits = combined_hits = 0
    for draw in range(draws):
        counts = resample_counts(n, 1000, seed=draw)
        differences = true_delta + rng.normal(0, image_sd, n)
        low, high = percentile_interval(counts @ differences / n)
        image_hits += low <= true_delta <= high
        per_seed = [differences + rng.normal(0, seed_sd) + rng.normal(0, image_sd / 5, n) for _ in range(3)]
        e = combine([d.mean() for d in per_seed], np.mean([counts @ d / n for d in per_seed], axis=0))
        combined_hits += e.low <= true_delta <= e.high
    if seed_sd < image_sd:  # without training noise the images' interval is the right one
        assert 0.91 <= image_hits / draws <= 0.98
    assert 0.91 <= combined_hits / draws <= 0.985


def synthetic_stats(rng: np.random.Generator, images: int = 40, nc: int = 3) -> tuple[DetectionStats, list[str]]:
    """Per-image detections with distinct confidences and labels, recorded as the validator records them."""
    import torch

    stats = DetectionStats(nc)
    for _ in range(images):
        labels = rng.integers(0, 5)
        boxes = rng.uniform(0, 200, (labels, 2))
        label_rows = np.column_stack((rng.integers(0, nc, labels), boxes, boxes + rng.uniform(10, 60, (labels, 2))))
        detections = []
        for row in label_rows:  # a jittered hit for most labels
            if rng.random() < 0.8:
                detections.append([*(row[1:] + rng.normal(0, 4, 4)), rng.random(), row[0]])
        for _ in range(rng.integers(0, 4)):  # false positives
            x, y = rng.uniform(0, 200, 2)
            detections.append([x, y, x + 30, y + 30, rng.random(), rng.integers(0, nc)])
        det = torch.tensor(detections, dtype=torch.float32).reshape(-1, 6)
        labels_tensor = torch.tensor(label_rows, dtype=torch.float32).reshape(-1, 5)
        stats.update(det[det[:, 4].argsort(descending=True)], labels_tensor)
    return stats, [f"image{i}.jpg" for i in range(images)]


def yolov5_map(stats: DetectionStats) -> float:
    return float(stats.compute().ap50_95.mean())


def test_weighted_map_is_yolov5s_map_of_the_weighted_images(tmp_path):
    stats, files = synthetic_stats(np.random.default_rng(1))
    images = ImageStats.from_detection_stats(stats, files)
    assert images.weighted_map(np.ones(len(files)))[1] == pytest.approx(yolov5_map(stats), abs=1e-12)
    # weights 2, 1, 0, ...: the same as listing image 0 twice and leaving image 2 out
    weights = np.random.default_rng(2).integers(0, 3, len(files))
    listed = [image for image, w in zip(stats.per_image(), weights, strict=True) for _ in range(w)]
    correct, conf, pred_cls, target_cls = (np.concatenate(arrays) for arrays in zip(*listed, strict=True))
    expected = ap_per_class(correct.astype(float), conf, pred_cls, target_cls)
    assert images.weighted_map(weights.astype(float))[1] == pytest.approx(float(expected.ap50_95.mean()), abs=1e-12)
    images.save(tmp_path / "stats.npz")
    again = ImageStats.load(tmp_path / "stats.npz")
    assert again.weighted_map(weights.astype(float)) == images.weighted_map(weights.astype(float))


def test_bootstrap_of_identical_predictions_is_exactly_zero():
    stats, files = synthetic_stats(np.random.default_rng(3))
    a, b = ImageStats.from_detection_stats(stats, files), ImageStats.from_detection_stats(stats, files)
    counts = resample_counts(len(files), 1000, seed=0)
    differences = a.bootstrap_maps(counts) - b.bootstrap_maps(counts)
    assert (differences == 0).all()
    e = combine([0.0], differences)
    assert (e.low, e.high, e.images) == (0.0, 0.0, (0.0, 0.0))
