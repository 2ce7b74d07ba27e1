"""The anchor-free ("v8") loss against Ultralytics' v8DetectionLoss on a committed fixture, plus its wiring."""

from types import SimpleNamespace

import pytest
import torch

from tests.conftest import ROOT
from yolo_attn.losses import build_loss
from yolo_attn.losses.anchor_free import AnchorFreeLoss, padded_targets
from yolo_attn.nn.heads.anchor_free import AnchorFreeDetect

FIXTURE = ROOT / "tests" / "fixtures" / "ultralytics" / "v8_loss.pt"


@pytest.fixture(scope="module")
def fixture():
    return torch.load(FIXTURE, weights_only=True)


def head_like(fixture) -> SimpleNamespace:
    return SimpleNamespace(nc=fixture["nc"], reg_max=fixture["reg_max"], stride=torch.tensor(fixture["strides"]))


def test_matches_ultralytics_v8_detection_loss(fixture):
    """Components, total (sum * batch) and the gradient norms per level equal Ultralytics' to 1e-5 relative."""
    preds = [p.clone().requires_grad_(True) for p in fixture["preds"]]
    total, components = AnchorFreeLoss(head_like(fixture), {})(preds, fixture["targets"])
    torch.testing.assert_close(components, fixture["components"], rtol=1e-5, atol=0)
    torch.testing.assert_close(total.detach(), fixture["total"], rtol=1e-5, atol=0)
    total.backward()
    torch.testing.assert_close(torch.stack([p.grad.norm() for p in preds]), fixture["grad_norms"], rtol=1e-5, atol=0)


def test_gains_from_an_ultralytics_hyp_only(fixture):
    head = head_like(fixture)
    assert AnchorFreeLoss(head, {"box": 0.05, "obj": 1.0, "cls": 0.5}).gains == {"box": 7.5, "cls": 0.5, "dfl": 1.5}
    assert AnchorFreeLoss(head, {"box": 5.0, "cls": 1.0, "dfl": 2.0}).gains == {"box": 5.0, "cls": 1.0, "dfl": 2.0}
    preds = fixture["preds"]
    default = AnchorFreeLoss(head, {})(preds, fixture["targets"])[1]
    doubled = AnchorFreeLoss(head, {"box": 15.0, "cls": 1.0, "dfl": 3.0})(preds, fixture["targets"])[1]
    torch.testing.assert_close(doubled, default * 2)


def test_no_targets_gives_class_loss_only(fixture):
    preds = [p.clone().requires_grad_(True) for p in fixture["preds"]]
    total, (box, cls, dfl) = AnchorFreeLoss(head_like(fixture), {})(preds, torch.zeros(0, 6))
    assert box == 0 and dfl == 0 and cls > 0
    total.backward()
    assert all(torch.isfinite(p.grad).all() for p in preds)


def test_targets_padded_per_image_in_any_order():
    targets = torch.tensor([[1, 2, 0.5, 0.5, 0.2, 0.4], [0, 1, 0.25, 0.25, 0.5, 0.5], [1, 0, 0.1, 0.1, 0.1, 0.1]])
    labels, boxes, mask = padded_targets(targets, 3, torch.tensor([64.0, 128.0]))
    assert labels.shape == (3, 2, 1) and mask[:, :, 0].tolist() == [[True, False], [True, True], [False, False]]
    assert labels[1, :, 0].tolist() == [2, 0]
    assert boxes[0, 0].tolist() == [0.0, 0.0, 64.0, 32.0]  # (cx, cy, w, h) * (w=128, h=64) -> xyxy pixels


def test_registry_builds_it_for_the_anchor_free_head():
    head = AnchorFreeDetect(nc=2, ch=(16, 32, 64))
    head.bind_strides(torch.tensor([8.0, 16.0, 32.0]))
    loss = build_loss(head, {"box": 0.05, "obj": 1.0, "cls": 0.5})
    assert isinstance(loss, AnchorFreeLoss) and loss.strides == [8.0, 16.0, 32.0]
    assert loss.item_names == ("box", "cls", "dfl")
    preds = head([torch.rand(2, c, 64 // s, 64 // s) for c, s in ((16, 8), (32, 16), (64, 32))])
    total, components = loss(preds, torch.tensor([[0, 1, 0.5, 0.5, 0.3, 0.4], [1, 0, 0.3, 0.6, 0.2, 0.2]]))
    total.backward()
    assert components.shape == (3,) and torch.isfinite(total)
    assert head.cv2[0][0].conv.weight.grad is not None and head.dfl.conv.weight.grad is None
