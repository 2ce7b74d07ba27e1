"""YOLOv7's cfg/baseline models (YOLOR, Scaled-YOLOv4, CSP-ResNet/ResNeXt, YOLOv3): parameter and GFLOP
parity with WongKinYiu/yolov7, state_dict keys and shapes, forward in train and eval mode."""

import pytest
import torch

from tests.conftest import CONFIGS
from yolo_attn import build_model
from yolo_attn.nn.heads.anchor_based import Detect, IDetect
from yolo_attn.nn.summary import count_gflops, count_params

# name: (params, GFLOPs at 640) -- YOLOv7's own Model(cfg, nc=80) and its thop count at 640x640
BASELINE = {
    "r50-csp": (34_299_578, 65.78),
    "x50-csp": (32_299_962, 61.02),
    "yolor-csp": (52_923_994, 121.03),
    "yolor-csp-x": (96_943_410, 227.65),
    "yolor-p6": (37_265_016, 81.84),
    "yolor-w6": (79_873_400, 113.78),
    "yolor-e6": (115_899_960, 171.44),
    "yolor-d6": (151_773_240, 234.73),
    "yolov4-csp": (52_921_437, 121.03),
    "yolov3": (61_949_149, 156.62),
    "yolov3-spp": (62_998_749, 157.46),
}
SMALL = ("r50-csp", "x50-csp", "yolor-p6", "yolov4-csp")  # reused below; the big ones are built once and dropped
SLOW = ("yolor-d6",)  # about 20 s of CPU to build and profile


@pytest.fixture(scope="module")
def models():
    cache = {}

    def get(name):
        if name in cache:
            return cache[name]
        model = build_model(CONFIGS / "models" / "baseline" / f"{name}.yaml")
        if name in SMALL:
            cache[name] = model
        return model

    return get


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in BASELINE])
def test_baseline_parity(models, name):
    params, gflops = BASELINE[name]
    model = models(name)
    assert count_params(model) == params
    assert count_gflops(model, 640) == pytest.approx(gflops, abs=0.005)  # the fixture is rounded to 2 decimals
    assert model.stride.tolist() == ([8, 16, 32, 64] if name.endswith("6") else [8, 16, 32])
    assert type(model.head) is (Detect if name.startswith("yolov") else IDetect)


# key: shape, read from YOLOv7's state_dict of the same config
KEYS = {
    "r50-csp": {
        "model.0.cv1.conv.weight": (64, 3, 3, 3),  # Stem: 3x3/2, then (1x1, 3x3/2) beside a max-pool
        "model.0.cv3.conv.weight": (64, 64, 3, 3),
        "model.0.cv4.conv.weight": (128, 128, 1, 1),
        "model.1.cv4.bn.weight": (128,),  # ResCSPC
        "model.1.m.0.cv1.conv.weight": (32, 64, 1, 1),  # Res with a half-width middle
        "model.1.m.0.cv3.conv.weight": (64, 32, 1, 1),
        "model.13.cv2.conv.weight": (256, 256, 1, 1),  # ResCSPB: cv2 reads cv1's output
        "model.13.m.1.cv2.conv.weight": (128, 128, 3, 3),
        "model.28.anchor_grid": (3, 1, 3, 1, 1, 2),
    },
    "x50-csp": {
        "model.1.m.0.cv2.conv.weight": (64, 2, 3, 3),  # ResX: full width, 32 groups
        "model.13.m.0.cv2.conv.weight": (256, 8, 3, 3),
    },
    "yolor-p6": {
        "model.3.cv3.conv.weight": (128, 128, 1, 1),  # BottleneckCSPA
        "model.3.m.0.cv2.conv.weight": (64, 64, 3, 3),
        "model.17.cv3.conv.weight": (256, 512, 1, 1),  # BottleneckCSPB
    },
}


@pytest.mark.parametrize("name", KEYS)
def test_state_dict_keys_match_yolov7(models, name):
    state = models(name).state_dict()
    assert {key: tuple(state[key].shape) for key in KEYS[name] if key in state} == KEYS[name]


@pytest.mark.parametrize("name", SMALL)
@pytest.mark.parametrize("train", [True, False])
def test_forward(models, name, train):
    model = models(name).train(train)
    levels = [(1, 3, 128 // s, 128 // s, 85) for s in model.stride.int().tolist()]
    with torch.no_grad():
        out = model(torch.rand(1, 3, 128, 128))
    if train:
        assert [tuple(o.shape) for o in out] == levels
    else:
        decoded, raw = out
        assert [tuple(o.shape) for o in raw] == levels
        assert decoded.shape == (1, sum(3 * h * w for _, _, h, w, _ in levels), 85)
        assert torch.isfinite(decoded).all()
