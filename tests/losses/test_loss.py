"""YOLOv5 loss against hand-computed values; OTA loss on a YOLOv7 head."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torchvision.ops import complete_box_iou_loss

from tests.conftest import CONFIGS
from yolo_attn import build_model
from yolo_attn.losses.yolov5 import ComputeLoss, bbox_ciou, scale_loss_gains

HYP = {"box": 0.05, "obj": 1.0, "cls": 0.5, "cls_pw": 1.0, "obj_pw": 1.0, "anchor_t": 4.0, "fl_gamma": 0.0}


def fake_head(anchors, nc=1):
    anchors = torch.tensor(anchors, dtype=torch.float32)
    return SimpleNamespace(anchors=anchors, nl=anchors.shape[0], na=anchors.shape[1], nc=nc)


def test_ciou_hand_computed_cases():
    boxes1 = torch.tensor([[1.0, 1.0, 2.0, 2.0], [1.0, 1.0, 2.0, 2.0], [1.0, 1.0, 2.0, 2.0]])
    boxes2 = torch.tensor([[1.0, 1.0, 2.0, 2.0], [4.0, 1.0, 2.0, 2.0], [1.0, 1.0, 4.0, 2.0]])
    v = 4 / math.pi**2 * (math.atan(2.0) - math.atan(1.0)) ** 2
    expected = torch.tensor([1.0, -9 / 29, 0.5 - v * v / (v - 0.5 + 1)])
    torch.testing.assert_close(bbox_ciou(boxes1, boxes2), expected, atol=1e-5, rtol=0)


def test_ciou_matches_torchvision_on_random_boxes():
    g = torch.Generator().manual_seed(0)
    xy, wh = torch.rand(200, 2, generator=g) * 10, torch.rand(200, 2, generator=g) * 5 + 0.1
    xy2, wh2 = xy + torch.randn(200, 2, generator=g), wh * (torch.rand(200, 2, generator=g) + 0.5)
    a, b = torch.cat((xy, wh), 1), torch.cat((xy2, wh2), 1)
    to_xyxy = lambda t: torch.cat((t[:, :2] - t[:, 2:] / 2, t[:, :2] + t[:, 2:] / 2), 1)  # noqa: E731
    torch.testing.assert_close(1 - bbox_ciou(a, b), complete_box_iou_loss(to_xyxy(a), to_xyxy(b)), atol=1e-4, rtol=1e-4)


def test_targets_use_own_cell_and_two_nearest_neighbours():
    loss = ComputeLoss(fake_head([[[1.0, 1.0]]]), HYP)
    preds = [torch.zeros(1, 1, 8, 8, 6)]
    targets = torch.tensor([[0, 0, 0.3, 0.6, 0.125, 0.125]])  # grid xy (2.4, 4.8): left and down neighbours
    tcls, tbox, indices, anchors = loss.build_targets(preds, targets)
    b, a, gj, gi = indices[0]
    assert sorted(zip(gi.tolist(), gj.tolist(), strict=True)) == [(1, 4), (2, 4), (2, 5)]
    own = (gi == 2) & (gj == 4)
    torch.testing.assert_close(tbox[0][own], torch.tensor([[0.4, 0.8, 1.0, 1.0]]))
    assert b.tolist() == [0, 0, 0] and a.tolist() == [0, 0, 0]


def test_targets_rejected_when_wh_ratio_exceeds_anchor_t():
    loss = ComputeLoss(fake_head([[[1.0, 1.0], [8.0, 8.0]]]), HYP)
    targets = torch.tensor([[0, 0, 0.5625, 0.5625, 0.75, 0.75]])  # 6 cells: 6x anchor 0 (rejected), 0.75x anchor 1
    _, _, indices, anchors = loss.build_targets([torch.zeros(1, 2, 8, 8, 6)], targets)
    assert set(indices[0][1].tolist()) == {1}
    assert torch.equal(anchors[0][0], torch.tensor([8.0, 8.0]))


def test_loss_value_hand_computed():
    """One 4x4 level, anchor 2x2 cells, a 1x1-cell target centred in cell (2, 2); all logits 0 except obj = c."""
    c = -2.0
    loss = ComputeLoss(fake_head([[[2.0, 2.0]]], nc=2), {**HYP, "label_smoothing": 0.1})
    pred = torch.zeros(2, 1, 4, 4, 7)
    pred[..., 4] = c
    pred[0, 0, 2, 2, 5:7] = torch.tensor([1.0, -1.0])
    targets = torch.tensor([[0, 1, 0.625, 0.625, 0.25, 0.25]])
    total, items = loss([pred], targets)
    # Box: predicted (0.5, 0.5, 2, 2) vs target (0.5, 0.5, 1, 1): IoU 1/4, same centre and aspect -> CIoU 0.25.
    lbox = 0.75 * HYP["box"]
    # Objectness: target IoU 0.25 at one of 32 cells (2 images x 16), 0 elsewhere; level balance 4.0.
    p = torch.sigmoid(torch.tensor(c))
    bce_obj = (-(0.25 * torch.log(p) + 0.75 * torch.log(1 - p)) - 31 * torch.log(1 - p)) / 32
    lobj = 4.0 * bce_obj * HYP["obj"]
    # Classes: smoothed targets (0.05, 0.95) for logits (1, -1).
    s1, s2 = torch.sigmoid(torch.tensor(1.0)), torch.sigmoid(torch.tensor(-1.0))
    bce_cls = (-(0.05 * torch.log(s1) + 0.95 * torch.log(1 - s1))
               - (0.95 * torch.log(s2) + 0.05 * torch.log(1 - s2))) / 2
    lcls = bce_cls * HYP["cls"]
    torch.testing.assert_close(items, torch.stack([torch.tensor(lbox), lobj, lcls]).float(), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(total, (items.sum() * 2).view(1))


def test_loss_gains_scale_like_yolov5():
    scaled = scale_loss_gains(HYP, nl=3, nc=20, img_size=320)
    assert scaled["box"] == pytest.approx(HYP["box"])
    assert scaled["cls"] == pytest.approx(0.5 * 20 / 80)
    assert scaled["obj"] == pytest.approx(0.25)
    assert scale_loss_gains(HYP, nl=4, nc=80, img_size=640)["box"] == pytest.approx(0.05 * 3 / 4)


def test_loss_backward_on_built_yolov5n():
    model = build_model(CONFIGS / "models" / "yolov5n.yaml", nc=3).train()
    preds = model(torch.rand(2, 3, 64, 64))
    targets = torch.tensor([[0, 1, 0.5, 0.5, 0.3, 0.4], [1, 2, 0.2, 0.3, 0.1, 0.1]])
    total, items = ComputeLoss(model.head, HYP)(preds, targets)
    total.backward()
    assert torch.isfinite(total).all() and items.shape == (3,) and (items > 0).all()
    assert model.head.m[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("cfg", ["yolov7-tiny.yaml"])
def test_ota_loss_backward_on_idetect_head(cfg):
    from yolo_attn.losses.ota import ComputeLossOTA

    model = build_model(CONFIGS / "models" / cfg, nc=3).train()
    preds = model(torch.rand(2, 3, 64, 64))
    targets = torch.tensor([[0, 1, 0.5, 0.5, 0.3, 0.4], [1, 2, 0.2, 0.3, 0.1, 0.1], [1, 0, 0.7, 0.6, 0.2, 0.5]])
    loss = ComputeLossOTA(model.head, HYP)
    total, items = loss(preds, targets)
    total.backward()
    assert torch.isfinite(total).all() and (items > 0).all()
    # Dynamic k keeps a subset of the YOLOv5 candidates, at least one per ground truth.
    _, _, candidates, _ = loss.build_targets(preds, targets)
    tcls, tbox, indices, _ = loss.ota_targets(preds, targets, 0.5)
    kept = sum(len(b) for b, *_ in indices)
    assert 3 <= kept <= sum(len(b) for b, *_ in candidates)
    assert set(torch.cat(tcls).tolist()) == {0, 1, 2}


def test_dynamic_k_keeps_cheapest_and_resolves_contested_candidates():
    from yolo_attn.losses.ota import ComputeLossOTA

    head = SimpleNamespace(**vars(fake_head([[[1.0, 1.0]]], nc=2)), stride=torch.tensor([8.0]))
    loss = ComputeLossOTA(head, HYP)
    candidates = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 5], [0, 0, 5, 5], [20, 20, 30, 30]], dtype=torch.float32)
    objectness, class_logits = torch.zeros(4, 1), torch.zeros(4, 2)
    # One ground truth: IoUs 1, 0.5, 0.25, 0 -> k = int(1.75) = 1, the exact box wins.
    kept, assigned = loss.dynamic_k_match(torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([1]), candidates, objectness,
                                          class_logits)
    assert kept.tolist() == [True, False, False, False] and assigned.tolist() == [0]
    # Two ground truths both pick candidate 0 (k = 1 each); it goes to the cheaper, the exact one (index 1).
    gts = torch.tensor([[0.0, 0, 10, 12], [0, 0, 10, 10]])
    kept, assigned = loss.dynamic_k_match(gts, torch.tensor([0, 0]), candidates, objectness, class_logits)
    assert kept.tolist() == [True, False, False, False] and assigned.tolist() == [1]
    # A larger k: a ground truth overlapping three candidates well keeps the two cheapest.
    near = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 9], [0, 0, 10, 8], [20, 20, 30, 30]], dtype=torch.float32)
    kept, assigned = loss.dynamic_k_match(torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([0]), near, objectness,
                                          class_logits)
    assert kept.tolist() == [True, True, False, False]  # k = int(1 + 0.9 + 0.8) = 2


def test_ota_aux_head_adds_quarter_weighted_aux_losses():
    """IAuxDetect: lead outputs matched with the two nearest neighbours, aux outputs with all four, weight 0.25."""
    from yolo_attn.losses.ota import ComputeLossAuxOTA

    model = build_model(CONFIGS / "models" / "yolov7-w6.yaml", nc=3).train()
    preds = model(torch.rand(1, 3, 128, 128))
    assert len(preds) == 2 * model.head.nl
    loss = ComputeLossAuxOTA(model.head, HYP)
    targets = torch.tensor([[0, 1, 0.5, 0.5, 0.3, 0.4], [0, 2, 0.2, 0.3, 0.1, 0.1]])
    lead, aux = preds[: model.head.nl], preds[model.head.nl :]
    _, all_items = loss(preds, targets)
    _, lead_items = loss(lead, targets)
    aux_raw = loss.level_losses(aux, *loss.ota_targets(lead, targets, 1.0), weight=0.25)
    _, aux_items = loss.total(*aux_raw, batch_size=1)
    torch.testing.assert_close(all_items, lead_items + aux_items)
    assert (aux_items > 0).all()


def test_loss_chosen_by_head_type_and_overridable():
    from yolo_attn.errors import UserError
    from yolo_attn.losses import build_loss
    from yolo_attn.losses.ota import ComputeLossAuxOTA, ComputeLossOTA

    def select_loss(head, hyp, choice):
        return build_loss(head, hyp, choice)

    v5 = build_model(CONFIGS / "models" / "yolov5n.yaml", nc=3).head
    v7 = build_model(CONFIGS / "models" / "yolov7-tiny.yaml", nc=3).head
    assert type(select_loss(v5, HYP, "auto")) is ComputeLoss
    assert type(select_loss(v7, HYP, "auto")) is ComputeLossOTA
    assert type(select_loss(v7, HYP, "v5")) is ComputeLoss and type(select_loss(v5, HYP, "ota")) is ComputeLossOTA
    aux = build_model(CONFIGS / "models" / "yolov7-w6.yaml", nc=3).head
    assert type(select_loss(aux, HYP, "auto")) is ComputeLossAuxOTA
    with pytest.raises(UserError, match="IAuxDetect"):
        select_loss(aux, HYP, "v5")
