"""YOLOv7 family: parameter/GFLOP parity with WongKinYiu/yolov7, state_dict keys, heads, forward shapes."""

import copy
import math

import pytest
import torch

from tests.conftest import CONFIGS
from yolo_attn import build_model
from yolo_attn.nn.blocks.yolov7 import RepConv
from yolo_attn.nn.heads.anchor_based import IAuxDetect, IDetect
from yolo_attn.nn.summary import count_gflops, count_params

# name: (params, GFLOPs, image size, fused params or None) -- YOLOv7's own counts, nc=80
YOLOV7 = {
    "yolov7": (37_622_682, 106.47, 640, 36_907_898),
    "yolov7-tiny": (6_228_762, 13.86, 640, 6_221_370),
    "yolov7x": (71_347_394, 190.58, 640, None),
    "yolov7-w6": (82_312_436, 421.92, 1280, None),
    "yolov7-e6": (111_898_292, 590.93, 1280, None),
}


@pytest.fixture(scope="module")
def models():
    """Each YOLOv7 config built once per test module."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = build_model(CONFIGS / "models" / f"{name}.yaml")
        return cache[name]

    return get


@pytest.mark.parametrize("name", YOLOV7)
def test_yolov7_parity(models, name):
    params, gflops, img, fused_params = YOLOV7[name]
    model = models(name)
    assert count_params(model) == params
    assert count_gflops(model, img) == pytest.approx(gflops, abs=0.005)  # the fixture is rounded to 2 decimals
    assert model.stride.tolist() == ([8, 16, 32, 64] if img == 1280 else [8, 16, 32])
    if fused_params is not None:
        assert count_params(copy.deepcopy(model).fuse()) == fused_params


def test_heads_follow_training_configs(models):
    assert type(models("yolov7").head) is IDetect
    assert type(models("yolov7-tiny").head) is IDetect
    assert type(models("yolov7-w6").head) is IAuxDetect
    e6 = models("yolov7-e6")
    assert type(e6.head) is IAuxDetect
    assert {m.type for m in e6.model} >= {"ReOrg", "DownC", "SPPCSPC"}


def test_state_dict_keys_match_yolov7(models):
    model = models("yolov7")
    keys = model.state_dict().keys()
    for key in (
        "model.0.conv.weight", "model.51.cv7.bn.running_var", "model.102.rbr_dense.0.weight",
        "model.102.rbr_dense.1.running_mean", "model.104.rbr_1x1.0.weight", "model.104.rbr_1x1.1.bias",
        "model.105.m.2.weight", "model.105.ia.0.implicit", "model.105.im.2.implicit", "model.105.anchors",
        "model.105.anchor_grid",
    ):
        assert key in keys
    # RepConv(128 -> 256) has no identity branch in YOLOv7, so no rbr_identity key there.
    assert not any(k.startswith("model.102.rbr_identity") for k in keys)
    fused_keys = copy.deepcopy(model).fuse().state_dict().keys()
    assert {"model.102.rbr_reparam.weight", "model.102.rbr_reparam.bias", "model.105.ia.0.implicit"} <= fused_keys
    assert not any("rbr_dense" in k or "rbr_1x1" in k for k in fused_keys)


def test_repconv_identity_branch_keys():
    keys = RepConv(16, 16).state_dict().keys()
    assert {"rbr_identity.weight", "rbr_identity.running_mean", "rbr_dense.0.weight", "rbr_1x1.1.weight"} <= set(keys)
    assert not any(k.startswith("rbr_identity") for k in RepConv(16, 16, s=2).state_dict())


def test_iauxdetect_keys_and_anchor_grid(models):
    head = models("yolov7-w6").head
    keys = models("yolov7-w6").state_dict().keys()
    assert {"model.122.m.3.weight", "model.122.m2.3.weight", "model.122.ia.3.implicit", "model.122.im.0.implicit",
            "model.122.anchor_grid"} <= keys
    assert head.anchor_grid.shape == (4, 1, 3, 1, 1, 2)
    assert head.anchor_grid[3, 0, 2, 0, 0].tolist() == [925, 792]
    assert head.anchors[3, 2].tolist() == [925 / 64, 792 / 64]


def test_anchor_grid_is_pixels_and_follows_anchor_changes(models):
    head = copy.deepcopy(models("yolov7").head)
    assert head.anchor_grid[0, 0, 0, 0, 0].tolist() == [12, 16]
    assert head.anchors[0, 0].tolist() == [12 / 8, 16 / 8]
    head.anchors[0, 0] = torch.tensor([2.0, 3.0])  # e.g. autoanchor replacing anchors in place
    saved = head.state_dict()["anchor_grid"]
    assert saved[0, 0, 0, 0, 0].tolist() == [16, 24]


def test_lead_and_aux_biases_get_the_same_prior():
    head = IAuxDetect(nc=2, anchors=[[10, 13, 16, 30], [30, 61, 62, 45]], ch=[4, 8, 6, 10])
    for conv in (*head.m, *head.m2):
        torch.nn.init.zeros_(conv.bias)
    head.bind_strides(torch.tensor([8.0, 16.0]))
    for lead, aux, s in zip(head.m, head.m2, (8, 16), strict=True):
        assert torch.equal(lead.bias, aux.bias)
        prior = lead.bias.view(head.na, -1)
        assert prior[1, 4].item() == pytest.approx(math.log(8 / (640 / s) ** 2))
        assert prior[1, 5].item() == pytest.approx(math.log(0.6 / (2 - 0.99999)))


@pytest.mark.parametrize("train", [True, False])
def test_yolov7_tiny_forward_non_square(train):
    model = build_model(CONFIGS / "models" / "yolov7-tiny.yaml", nc=4).train(train)
    with torch.no_grad():
        out = model(torch.rand(2, 3, 256, 320))
    levels = [(2, 3, 32, 40, 9), (2, 3, 16, 20, 9), (2, 3, 8, 10, 9)]
    if train:
        assert [tuple(o.shape) for o in out] == levels
    else:
        decoded, raw = out
        assert decoded.shape == (2, 3 * (32 * 40 + 16 * 20 + 8 * 10), 9)
        assert [tuple(o.shape) for o in raw] == levels
        assert torch.isfinite(decoded).all()
        assert decoded[..., 0].max() <= 320 + 64 and decoded[..., 1].max() <= 256 + 64  # centres inside the image


@pytest.mark.parametrize("train", [True, False])
def test_yolov7_w6_forward_non_square(models, train):
    model = models("yolov7-w6").train(train)
    with torch.no_grad():
        out = model(torch.rand(1, 3, 256, 320))
    lead = [(1, 3, 32, 40, 85), (1, 3, 16, 20, 85), (1, 3, 8, 10, 85), (1, 3, 4, 5, 85)]
    if train:
        assert [tuple(o.shape) for o in out] == lead + lead  # lead heads, then auxiliary heads
    else:
        decoded, raw = out
        assert decoded.shape == (1, 3 * (32 * 40 + 16 * 20 + 8 * 10 + 4 * 5), 85)
        assert [tuple(o.shape) for o in raw] == lead
