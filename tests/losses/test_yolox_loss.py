"""YOLOX's loss against YOLOAir's own ``DetectX.get_losses`` on a recorded batch
(``tests/fixtures/yoloair_yolox/README.md``), and its L1 schedule."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from yolo_attn.losses import build_loss
from yolo_attn.losses.yolox import YoloxLoss
from yolo_attn.nn.heads.yolox import DetectX

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "yoloair_yolox" / "loss_case.pt"
RTOL = 1e-5


@pytest.fixture(scope="module")
def case():
    return torch.load(FIXTURE, weights_only=True)


def loss_for(case, use_l1: bool):
    loss = YoloxLoss(SimpleNamespace(nc=case["nc"], stride=case["strides"]), {})
    loss.use_l1 = use_l1
    maps = [m.clone().requires_grad_() for m in case["maps"]]
    return loss(maps, case["targets"].clone()), maps


@pytest.mark.parametrize("use_l1", [False, True])
def test_total_matches_yoloair(case, use_l1):
    (total, items), maps = loss_for(case, use_l1)
    expected = case["loss"] if use_l1 else case["loss_without_l1"]
    torch.testing.assert_close(total.detach(), expected, rtol=RTOL, atol=0)
    total.backward()
    assert all(m.grad is not None and torch.isfinite(m.grad).all() for m in maps)


def test_items_match_yoloair(case):
    (_, items), _ = loss_for(case, True)
    expected = torch.stack([case[k] for k in ("box", "obj", "cls", "l1")])
    torch.testing.assert_close(items, expected, rtol=RTOL, atol=0)
    assert YoloxLoss.item_names == ("box", "obj", "cls", "l1")


def test_l1_joins_for_the_last_15_epochs():
    loss = YoloxLoss(SimpleNamespace(nc=1, stride=torch.tensor([8.0])), {})
    assert [e for e in range(100) if (loss.set_epoch(e, 100), loss.use_l1)[1]] == list(range(85, 100))
    assert not any((loss.set_epoch(e, 10), loss.use_l1)[1] for e in range(10))  # YOLOAir: never below 15 epochs


def test_image_without_truths_only_learns_objectness(case):
    (total, items), _ = loss_for({**case, "targets": torch.zeros(0, 6)}, False)
    assert items[0] == items[2] == items[3] == 0 and items[1] > 0 and torch.isfinite(total)


def test_head_contract_picks_the_loss():
    head = DetectX(2, [[0, 1]] * 3, [8, 8, 8, 8, 8, 8])
    assert isinstance(build_loss(head, {}), YoloxLoss) and isinstance(build_loss(head, {}, for_eval=True), YoloxLoss)
