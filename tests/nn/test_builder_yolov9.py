"""Ultralytics' YOLOv9 YAMLs (Wang, Yeh, Liao, "YOLOv9: Learning What You Want to Learn Using Programmable Gradient
Information", arXiv:2402.13616, 2024): exact parameter counts, GFLOPs within 0.1 %, Ultralytics' state_dict keys and
shapes, outputs equal to Ultralytics' own on the committed fixture (tests/fixtures/ultralytics/yolov9t.pt, which also
holds a small model with yolov9e's CBLinear / CBFuse branch), and one training step with the anchor-free loss."""

import copy
import functools
import hashlib
import json

import pytest
import torch

from tests.conftest import CONFIGS, ROOT
from tests.nn.ultralytics_weights import seeded_input, seeded_state_dict
from yolo_attn import build_model
from yolo_attn.losses import build_loss
from yolo_attn.nn.blocks.yolov9 import CBFuse, CBLinear, RepConvN
from yolo_attn.nn.builder import ModelConfigError, load_model_yaml, parse_layers, resolve_scale
from yolo_attn.nn.model import DetectionModel
from yolo_attn.nn.summary import count_gflops, count_params

FIXTURES = ROOT / "tests" / "fixtures" / "ultralytics"
COUNTS = json.loads((FIXTURES / "model_counts.json").read_text())

# Ultralytics 8.4.190, nc 80, unfused: parameters (exact) and get_flops(model, 640) (THOP).
PARITY = {
    "yolov9t": (2_128_720, 8.4811264), "yolov9s": (7_318_368, 27.552), "yolov9m": (20_216_160, 77.8603776),
    "yolov9c": (25_590_912, 104.0144896), "yolov9e": (58_206_592, 193.0074624),
}


@functools.cache
def meta_model(name: str) -> DetectionModel:
    """``configs/models/<name>.yaml`` laid out on the meta device: counts without weights or a stride probe."""
    d = resolve_scale(load_model_yaml(CONFIGS / "models" / f"{name}.yaml"))
    with torch.device("meta"):
        layers, save, _ = parse_layers(d, 3)
    return DetectionModel(layers, save, d)


@pytest.fixture(scope="module")
def fixture():
    return torch.load(FIXTURES / "yolov9t.pt", weights_only=True)


@pytest.fixture(scope="module")
def yolov9t():
    return build_model(CONFIGS / "models" / "yolov9t.yaml")


def seeded(model: DetectionModel, reference: dict) -> DetectionModel:
    """``model`` with the fixture's seeded weights loaded strictly by key, in eval mode."""
    shapes = dict(zip(reference["keys"], map(tuple, reference["shapes"]), strict=True))
    model.load_state_dict(seeded_state_dict(shapes), strict=True)
    return model.eval()


def key_digest(model: torch.nn.Module) -> str:
    """SHA-1 of the sorted ``key:shape`` lines of the state dict, as in model_counts.json."""
    lines = "".join(f"{k}:{tuple(v.shape)}\n" for k, v in sorted(model.state_dict().items()))
    return hashlib.sha1(lines.encode()).hexdigest()


@pytest.mark.parametrize("name", PARITY)
def test_parameter_parity(name):
    model = meta_model(name)
    assert count_params(model) == PARITY[name][0]
    assert len(model.state_dict()) == COUNTS[f"{name}.yaml"]["keys"]


@pytest.mark.parametrize("name", PARITY)
def test_gflops_parity(name):
    assert count_gflops(meta_model(name), 640) == pytest.approx(PARITY[name][1], rel=1e-3)


def test_state_dict_keys_and_shapes_match_ultralytics(fixture):
    """yolov9t against the fixture's keys and shapes; every scale (yolov9e's CBLinear / CBFuse included) against the
    digest of Ultralytics' sorted ``key:shape`` lines."""
    state = meta_model("yolov9t").state_dict()
    assert sorted(state) == fixture["keys"]
    assert [list(state[k].shape) for k in fixture["keys"]] == fixture["shapes"]
    for name in PARITY:
        assert key_digest(meta_model(name)) == COUNTS[f"{name}.yaml"]["keys_sha1"], name
    e = meta_model("yolov9e")
    assert isinstance(e.model[14], CBLinear) and e.model[14].c2s == [64, 128, 256, 512, 1024]
    assert isinstance(e.model[16], CBFuse) and e.model[16].f == [10, 11, 12, 13, 14, -1]
    assert e.model[15].conv.in_channels == 3  # reads layer 0, the nn.Identity on the input


def test_outputs_match_ultralytics(fixture, yolov9t):
    """Ultralytics' weights (seeded by key) load strictly; the decoded eval output is Ultralytics' (bit-identical)."""
    model = seeded(copy.deepcopy(yolov9t), fixture)
    assert model.stride.tolist() == [8.0, 16.0, 32.0] and model.head.cv3[0][0].conv.groups == 1  # legacy head
    x = seeded_input()
    assert list(x.shape) == fixture["input_shape"]
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], fixture["decoded"], rtol=1e-5, atol=1e-5)


def test_cblinear_cbfuse_model_matches_ultralytics(fixture):
    """A small model with every YOLOv9 block and yolov9e's auxiliary branch: counts, keys, outputs unfused and
    fused (RepConvN folded) as Ultralytics'."""
    reference = fixture["cb_tiny"]
    model = build_model({**reference["yaml"], "yaml_file": "yolov9-cb-tiny.yaml"})
    assert count_params(model) == reference["params"]
    assert count_gflops(model, 640) == pytest.approx(reference["gflops"], rel=1e-3)
    assert sorted(model.state_dict()) == reference["keys"]
    model = seeded(model, reference)
    x = seeded_input()
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], reference["decoded"], rtol=1e-5, atol=1e-5)
        fused = model.fuse()(x)[0]
    assert not any(isinstance(m, RepConvN) and m.conv is None for m in model.modules())
    torch.testing.assert_close(fused, reference["decoded_fused"], rtol=1e-4, atol=1e-4 * fused.abs().max().item())


def test_trains_with_the_anchor_free_loss(fixture, yolov9t):
    """One step of the v8 loss on a random 64x64 batch: yolov9t's train-mode output is what the loss takes, and
    gradients reach the backbone (RepConvN) and, in the small CBLinear model, the auxiliary branch."""
    targets = torch.tensor([[0, 3, 0.5, 0.5, 0.4, 0.3], [1, 7, 0.3, 0.6, 0.2, 0.25], [1, 0, 0.7, 0.2, 0.3, 0.3]])
    tiny = build_model({**fixture["cb_tiny"]["yaml"], "yaml_file": "yolov9-cb-tiny.yaml"})
    for model, weight in ((copy.deepcopy(yolov9t), "model.4.cv2.0.m.0.cv1.conv1.conv.weight"),
                          (tiny, "model.7.conv.weight")):
        model.train()
        loss = build_loss(model.head, {"box": 7.5, "cls": 0.5, "dfl": 1.5})
        preds = model(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
        assert [p.shape[-1] for p in preds] == [64 // int(s) for s in model.stride]
        total, items = loss(preds, targets[targets[:, 1] < model.nc])
        total.backward()
        assert torch.isfinite(total) and items.shape == (3,)
        grad = dict(model.named_parameters())[weight].grad
        assert grad is not None and grad.abs().sum() > 0


@pytest.mark.parametrize("bn, g", [(False, 1), (True, 1), (True, 2)])
def test_repconvn_fuse_keeps_the_output(bn, g):
    """The folded 3x3 conv gives the three-branch output, with the identity BatchNorm and groups too."""
    block = RepConvN(8, 8, g=g, bn=bn)
    shapes = {k: tuple(v.shape) for k, v in block.state_dict().items()}
    block.load_state_dict(seeded_state_dict(shapes, seed=3), strict=True)
    block.eval()
    x = torch.randn(2, 8, 7, 9, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = block(x)
        block.fuse()
        torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)
    assert block.conv1 is None and block.conv.groups == g and (block.bn is None)


def tiny_yaml(*layers: list) -> dict:
    head = [[-1, 1, "Conv", [16, 3, 2]], [[-2, -1], 1, "Detect", ["nc"]]]
    stem = [[-1, 1, "nn.Identity", []], [-1, 1, "Conv", [16, 3, 2]], [-1, 1, "CBLinear", [[8, 16]]]]
    return {"nc": 2, "backbone": stem + list(layers), "head": head, "yaml_file": "yolov9-bad.yaml"}


@pytest.mark.parametrize("layer, message", [
    ([[2, 1], 1, "CBFuse", [[0, 1]]], r"layer 3 .*2 indices for 1 CBLinear inputs"),
    ([[2, 1], 1, "CBFuse", [0]], r"layer 3 .*one list of indices"),
    ([[2, 1], 1, "CBFuse", [[2]]], r"layer 3 .*shape mismatch"),  # CBLinear 2 gives two maps only
    ([[2, 1], 1, "CBFuse", [[0]]], r"layer 3 .*shape mismatch"),  # an 8-channel map onto a 16-channel one
    ([[1, 1], 1, "CBFuse", [[0]]], r"layer 3 .*CBLinear output"),
    ([1, 1, "CBLinear", [16]], r"layer 3 .*list of output widths"),
    ([1, 2, "CBLinear", [[16]]], r"layer 3 .*number must be 1"),
    ([0, 1, "ADown", [16]], r"layer 3 .*must be even"),  # 3 input channels
])
def test_bad_yolov9_lines_name_the_layer(layer, message):
    with pytest.raises(ModelConfigError, match=message):
        build_model(tiny_yaml(layer))
