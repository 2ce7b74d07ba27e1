"""The end-to-end loss (YOLOv10 / YOLO26 one-to-many + one-to-one) against Ultralytics 8.4.190's ``E2ELoss`` on seeded
predictions (``tests/fixtures/ultralytics/e2e_loss.pt``): with DFL (reg_max 16) and DFL-free (reg_max 1, L1 sides),
at the first epoch and after four epochs of the one-to-many weight decay."""

from types import SimpleNamespace

import pytest
import torch

from tests.conftest import ROOT
from yolo_attn.losses.end_to_end import EndToEndLoss, one_to_many_weight

FIXTURE = torch.load(ROOT / "tests" / "fixtures" / "ultralytics" / "e2e_loss.pt", weights_only=True)


@pytest.mark.parametrize("case", FIXTURE["cases"], ids=lambda c: f"reg_max{c['reg_max']}-epoch{c['epoch']}")
def test_matches_ultralytics_e2e_loss(case):
    head = SimpleNamespace(nc=FIXTURE["nc"], reg_max=case["reg_max"], stride=torch.tensor(FIXTURE["strides"]))
    loss = EndToEndLoss(head, {})
    loss.set_epoch(case["epoch"], FIXTURE["epochs"])
    many = [p.clone().requires_grad_(True) for p in case["one2many"]]
    one = [p.clone().requires_grad_(True) for p in case["one2one"]]
    total, items = loss({"one2many": many, "one2one": one}, FIXTURE["targets"])
    torch.testing.assert_close(items, case["items"], rtol=1e-5, atol=0)
    torch.testing.assert_close(total.detach(), case["total"], rtol=1e-5, atol=0)
    total.backward()
    torch.testing.assert_close(torch.stack([p.grad.norm() for p in many]), case["grad_norms_many"], rtol=1e-5, atol=0)
    torch.testing.assert_close(torch.stack([p.grad.norm() for p in one]), case["grad_norms_one"], rtol=1e-5, atol=0)
    assert loss.item_names == (("box", "cls", "dfl") if case["reg_max"] > 1 else ("box", "cls", "l1"))


def test_one_to_many_weight_decays_from_0_8_to_0_1():
    assert one_to_many_weight(0, 10) == pytest.approx(0.8)
    assert one_to_many_weight(9, 10) == pytest.approx(0.1)
    assert one_to_many_weight(20, 10) == pytest.approx(0.1)
    assert one_to_many_weight(0, 1) == pytest.approx(0.8)
