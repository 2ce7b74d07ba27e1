"""Metrics: matching, AP, P/R at max F1, confusion matrix, COCOeval wrapper."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from yolo_attn.errors import UserError
from yolo_attn.metrics import (
    ConfusionMatrix,
    DetectionStats,
    ap_per_class,
    coco_evaluate,
    compute_ap,
    match_predictions,
    smooth,
)


def det(*rows):
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 6)


def lab(*rows):
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 5)


def test_match_counts_a_label_once_for_the_first_detection_and_respects_each_threshold():
    labels = lab([0, 0, 0, 10, 10])
    detections = det(
        [0, 0, 10, 10, 0.9, 0],  # IoU 1
        [0, 0, 10, 10, 0.8, 0],  # duplicate of the same label: false positive
        [0, 0, 10, 7, 0.7, 1],  # other class
    )
    correct = match_predictions(detections, labels)
    assert correct[0].all() and not correct[1].any() and not correct[2].any()
    shifted = match_predictions(det([0, 0, 10, 7, 0.9, 0]), labels)  # IoU 0.7
    assert shifted[0].tolist() == [True] * 5 + [False] * 5  # thresholds 0.50..0.70 pass, 0.75.. fail


def test_match_gives_each_detection_its_best_label():
    labels = lab([0, 0, 0, 10, 10], [0, 20, 0, 30, 10])
    detections = det([19, 0, 30, 10, 0.9, 0], [1, 0, 10, 10, 0.8, 0])
    assert match_predictions(detections, labels)[:, 0].tolist() == [True, True]


def test_compute_ap_is_the_101_point_area_under_the_precision_envelope():
    ap, _, _ = compute_ap(np.array([1 / 3, 1 / 3, 2 / 3]), np.array([1.0, 0.5, 2 / 3]))
    # envelope: 1 up to recall 1/3, 2/3 up to 2/3, then linear down to 0 at recall 1 -> 1/3 + 2/9 + 1/9
    assert ap == pytest.approx(2 / 3, abs=4e-3)
    perfect, _, _ = compute_ap(np.array([0.5, 1.0]), np.array([1.0, 1.0]))
    assert perfect == pytest.approx(0.995)  # YOLOv5's ceiling: the sentinel drops precision to 0 at recall 1


def test_smooth_keeps_length_and_constants():
    y = np.full(1000, 0.3)
    np.testing.assert_allclose(smooth(y, 0.1), y)
    step = (np.arange(1000) >= 500).astype(float)
    smoothed = smooth(step, 0.05)  # 51-wide box: the step becomes a ramp from index 475 to 525
    assert smoothed.shape == (1000,) and smoothed[474] == 0 and smoothed[525] == pytest.approx(1)
    assert smoothed[500] == pytest.approx(26 / 51)


def test_ap_per_class_reports_each_labelled_class_and_p_r_at_the_best_f1():
    tp = np.zeros((4, 10))
    tp[[0, 2]] = 1
    metrics = ap_per_class(tp, np.array([0.9, 0.8, 0.7, 0.6]), np.array([0, 0, 0, 1]), np.array([0, 0, 0, 2]))
    assert metrics.classes.tolist() == [0, 2] and metrics.instances.tolist() == [3, 1]
    assert metrics.ap[0, 0] == pytest.approx(2 / 3, abs=4e-3) and (metrics.ap[1] == 0).all()
    # F1 peaks below the last true positive's confidence: P = R = 2/3 there
    assert metrics.precision[0] == pytest.approx(2 / 3) and metrics.recall[0] == pytest.approx(2 / 3)
    assert metrics.ap50_95.shape == (2,) and metrics.pr_curve.shape == (2, 1000)


def test_confusion_matrix_counts_hits_confusions_and_background():
    cm = ConfusionMatrix(nc=2)
    labels = lab([0, 0, 0, 10, 10], [1, 20, 20, 30, 30], [1, 50, 50, 60, 60])
    detections = det(
        [0, 0, 10, 10, 0.9, 0],  # correct class 0
        [20, 20, 30, 30, 0.9, 0],  # class 1 predicted as 0
        [80, 80, 90, 90, 0.9, 1],  # nothing there: background false positive
        [50, 50, 60, 60, 0.1, 1],  # below conf: ignored, so label 3 is missed
    )
    cm.update(detections, labels)
    cm.update(det([0, 0, 5, 5, 0.5, 1]), lab())  # image without labels
    assert cm.matrix.tolist() == [[1, 1, 0], [0, 0, 2], [0, 1, 0]]


def test_detection_stats_accumulate_images_and_instances():
    stats = DetectionStats(nc=3)
    stats.update(det([0, 0, 10, 10, 0.9, 0]), lab([0, 0, 0, 10, 10], [2, 5, 5, 8, 8]))
    stats.update(det(), lab([2, 1, 1, 4, 4]))
    stats.update(det([0, 0, 3, 3, 0.5, 1]), lab())
    metrics = stats.compute()
    assert stats.images == 3 and stats.images_per_class.tolist() == [1, 0, 2]
    assert metrics.classes.tolist() == [0, 2] and metrics.ap50.tolist() == pytest.approx([0.995, 0.0], abs=1e-9)


def _tiny_coco():
    return {
        "images": [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 100, "height": 100}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 3, "bbox": [10, 10, 40, 30], "area": 1200, "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 7, "bbox": [50, 50, 20, 20], "area": 400, "iscrowd": 0},
        ],
        "categories": [{"id": 3, "name": "a"}, {"id": 7, "name": "b"}],
    }


def test_coco_evaluate_perfect_and_empty_predictions():
    gt = _tiny_coco()
    perfect = [{**{k: a[k] for k in ("image_id", "category_id", "bbox")}, "score": 0.9} for a in gt["annotations"]]
    stats = coco_evaluate(gt, perfect)
    assert stats["AP"] == pytest.approx(1.0) and stats["AR100"] == pytest.approx(1.0) and stats["APl"] == -1.0
    half = coco_evaluate(gt, perfect[:1])
    assert half["AP50"] == pytest.approx(0.5)
    assert coco_evaluate(gt, []) == dict.fromkeys(stats, 0.0)
    assert gt == _tiny_coco()  # inputs untouched
    assert all(set(p) == {"image_id", "category_id", "bbox", "score"} for p in perfect)


def test_unknown_or_missing_coco_backend_is_a_user_error():
    with pytest.raises(UserError, match="unknown COCO backend"):
        coco_evaluate(_tiny_coco(), [], backend="nope")


@pytest.mark.skipif(importlib.util.find_spec("faster_coco_eval") is None, reason="faster-coco-eval not installed")
def test_faster_backend_reproduces_pycocotools():
    gt = _tiny_coco()
    rng = np.random.default_rng(0)
    preds = [
        {
            "image_id": int(i),
            "category_id": int(c),
            "bbox": [float(x) for x in rng.uniform(0, 50, 4)],
            "score": float(s),
        }
        for i, c, s in zip(rng.integers(1, 3, 40), rng.choice([3, 7], 40), rng.uniform(0, 1, 40), strict=True)
    ]
    preds += [{**{k: a[k] for k in ("image_id", "category_id", "bbox")}, "score": 0.5} for a in gt["annotations"]]
    reference, faster = coco_evaluate(gt, preds, backend="pycocotools"), coco_evaluate(gt, preds, backend="faster")
    assert faster == pytest.approx(reference, abs=1e-6)
    assert coco_evaluate(gt, preds, backend="auto") == faster
