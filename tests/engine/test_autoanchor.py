"""AutoAnchor: best possible recall and anchor evolution."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tests.conftest import CONFIGS
from yolo_attn import build_model
from yolo_attn.engine.autoanchor import check_anchors, evolve_anchors, kmeans, label_sizes, recall_stats


def test_recall_stats_hand_computed():
    anchors = torch.tensor([[10.0, 10.0], [40.0, 20.0]])
    wh = torch.tensor([[10.0, 10.0], [50.0, 50.0], [2.0, 2.0], [30.0, 15.0]])
    # box 2 (50x50): best ratio min(50/40, 50/20)^-1 -> 20/50 = 0.4 > 0.25; box 3 (2x2): 0.2 < 0.25.
    bpr, aat = recall_stats(anchors, wh, anchor_t=4.0)
    assert bpr == pytest.approx(3 / 4)
    # anchors above 1/4 per box: box0 -> 10x10 (and 40x20? 10/40 = 0.25, not above): 1; box1 -> 1; box2 -> 0; box3 -> 2.
    assert aat == pytest.approx((1 + 1 + 0 + 2) / 4)


def test_label_sizes_scale_long_side_to_img_size():
    shapes = np.array([[640, 320], [100, 200]])
    labels = [np.array([[0, 0.5, 0.5, 0.5, 0.5]]), np.array([[1, 0.5, 0.5, 0.1, 0.2]])]
    np.testing.assert_allclose(label_sizes(shapes, labels, 320), [[160, 80], [16, 64]])


def test_kmeans_finds_separated_clusters():
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(c, 0.1, (50, 2)) for c in (0.0, 5.0, 10.0)])
    centres = np.sort(kmeans(points, 3)[:, 0])
    np.testing.assert_allclose(centres, [0.0, 5.0, 10.0], atol=0.1)


def test_evolved_anchors_sorted_and_better():
    rng = np.random.default_rng(1)
    wh = np.concatenate([rng.uniform(8, 16, (100, 2)), rng.uniform(60, 90, (100, 2)), rng.uniform(200, 300, (100, 2))])
    anchors = evolve_anchors(wh, n=3, anchor_t=4.0, generations=200)
    assert anchors.shape == (3, 2) and (np.diff(anchors.prod(1)) > 0).all()
    bpr, _ = recall_stats(torch.tensor(anchors, dtype=torch.float32), torch.tensor(wh, dtype=torch.float32), 4.0)
    assert bpr == 1.0


def test_check_anchors_replaces_poor_anchors_in_stride_units():
    model = build_model(CONFIGS / "models" / "yolov5n.yaml", nc=1)
    head = model.head
    rng = np.random.default_rng(0)
    # Every box is a thin horizontal strip: YOLOv5's default anchors miss most of them.
    labels = [np.array([[0, 0.5, 0.5, rng.uniform(0.3, 0.9), rng.uniform(0.01, 0.02)]]) for _ in range(200)]
    dataset = SimpleNamespace(shapes=np.full((200, 2), 640), labels=labels)
    before = head.anchors.clone()
    report = check_anchors(dataset, head, anchor_t=4.0, img_size=640, generations=100)
    assert report.bpr < 0.98 and report.replaced and report.new_bpr > report.bpr
    assert not torch.equal(head.anchors, before)
    pixels = (head.anchors * head.stride.view(-1, 1, 1)).view(-1, 2)
    assert (pixels[:, 0] > pixels[:, 1]).all()  # wide anchors for wide boxes
    assert (pixels.prod(1).diff() >= 0).all()  # small anchors on the fine level


def test_check_anchors_keeps_good_anchors():
    model = build_model(CONFIGS / "models" / "yolov5n.yaml", nc=1)
    labels = [np.array([[0, 0.5, 0.5, 0.05, 0.06], [0, 0.3, 0.3, 0.2, 0.15]]) for _ in range(20)]
    before = model.head.anchors.clone()
    report = check_anchors(SimpleNamespace(shapes=np.full((20, 2), 640), labels=labels), model.head)
    assert report.bpr == 1.0 and not report.replaced and torch.equal(model.head.anchors, before)
