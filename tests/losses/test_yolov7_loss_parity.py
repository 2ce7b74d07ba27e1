"""Our training losses against YOLOv7's own (WongKinYiu/yolov7 ``utils/loss.py``) on saved raw head outputs.

Each fixture in ``tests/fixtures/yolov7_loss`` holds a YOLOv7 model's training-mode outputs for a seeded
320 px batch, the targets, the hyp before and after YOLOv7's train.py scaling, the anchors (stride units),
the strides and the loss YOLOv7 computed (see the README there). Our loss runs on the same outputs.
"""

import copy
import functools
from pathlib import Path

import pytest
import torch

from tests.conftest import CONFIGS
from yolo_attn import build_model
from yolo_attn.losses.ota import ComputeLossAuxOTA, ComputeLossOTA
from yolo_attn.losses.yolov5 import ComputeLoss, scale_loss_gains

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "yolov7_loss"

# fixture: (our config for the head, our loss class); the loss reads only the head's nc, nl, na, anchors and
# strides, so the Detect case uses our smallest Detect model rather than YOLOv7's 52M-parameter yolov4-csp
CASES = {
    "detect_yolov4csp": ("models/yolov5n.yaml", ComputeLoss),
    "idetect_yolov7tiny": ("models/yolov7-tiny.yaml", ComputeLossOTA),
    "iauxdetect_yolov7w6": ("models/yolov7-w6.yaml", ComputeLossAuxOTA),
}


def load_fixture(name: str) -> dict:
    return torch.load(FIXTURES / f"{name}.pt", weights_only=True)


@functools.cache
def built_head(config: str, nc: int) -> torch.nn.Module:
    return build_model(CONFIGS / config, nc=nc).head


def head_like(fixture: dict, config: str) -> torch.nn.Module:
    """Our head for ``config`` with the fixture's classes, anchors (stride units) and strides."""
    head = copy.deepcopy(built_head(config, fixture["nc"]))
    head.anchors.copy_(fixture["anchors"])
    head.stride = fixture["stride"].clone()
    return head


@pytest.mark.parametrize("name", CASES)
def test_hyp_scaling_matches_yolov7(name):
    fixture = load_fixture(name)
    hyp = scale_loss_gains(fixture["hyp_raw"], fixture["nl"], fixture["nc"], fixture["img_size"])
    gains = ("box", "obj", "cls")
    assert [hyp[k] for k in gains] == pytest.approx([fixture["hyp"][k] for k in gains], rel=1e-12)


@pytest.mark.parametrize("name", ["idetect_yolov7tiny", "iauxdetect_yolov7w6"])
def test_same_config_gives_yolov7s_anchors_and_strides(name):
    fixture = load_fixture(name)
    head = built_head(CASES[name][0], fixture["nc"])
    assert torch.equal(head.anchors, fixture["anchors"])
    assert torch.equal(head.stride, fixture["stride"])


@pytest.mark.parametrize("name", ["detect_yolov4csp", "idetect_yolov7tiny", "iauxdetect_yolov7w6"])
def test_loss_matches_yolov7(name):
    fixture = load_fixture(name)
    config, loss_class = CASES[name]
    head = head_like(fixture, config)
    assert (type(head).__name__, head.nl, head.na) == (fixture["head"], fixture["nl"], fixture["na"])
    preds = [p.float() for p in fixture["preds"]]
    loss, items = loss_class(head, fixture["hyp"])(preds, fixture["targets"])
    expected = fixture["loss_items"]
    assert items.tolist() == pytest.approx([expected["box"], expected["obj"], expected["cls"]], rel=1e-5)
    assert loss.item() == pytest.approx(fixture["loss"], rel=1e-5)
