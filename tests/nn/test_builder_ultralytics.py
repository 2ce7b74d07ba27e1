"""Ultralytics' YOLOv8 / YOLO11 / YOLO12 YAMLs: parameter and GFLOPs parity, scale selection, state_dict keys,
the anchor-free head, and outputs equal to Ultralytics' own on the committed fixtures (tests/fixtures/ultralytics)."""

import logging

import pytest
import torch
import yaml

from tests.conftest import CONFIGS, ROOT
from tests.nn.ultralytics_weights import seeded_input, seeded_state_dict
from yolo_attn import build_model
from yolo_attn.nn.builder import ModelConfigError, load_model_yaml, parse_layers, resolve_scale
from yolo_attn.nn.heads import head_contract
from yolo_attn.nn.heads.anchor_free import AnchorFreeDetect
from yolo_attn.nn.model import DetectionModel
from yolo_attn.nn.summary import count_gflops, count_params
from yolo_attn.nn.yaml_edit import default_block_args, insert_block

FIXTURES = ROOT / "tests" / "fixtures" / "ultralytics"

# Parameters (exact) and GFLOPs at 640 from Ultralytics 8.4's own get_flops (thop), nc 80, unfused.
PARITY = {
    "yolov8n": (3_157_200, 8.855), "yolov8s": (11_166_560, 28.812), "yolov8m": (25_902_640, 79.314),
    "yolov8l": (43_691_520, 165.735), "yolov8x": (68_229_648, 258.537),
    "yolo11n": (2_624_080, 6.673), "yolo11s": (9_458_752, 21.836), "yolo11m": (20_114_688, 68.643),
    "yolo11l": (25_372_160, 87.851), "yolo11x": (56_966_176, 196.315),
    "yolo12n": (2_602_288, 7.634), "yolo12s": (9_284_096, 23.653), "yolo12m": (20_199_168, 71.348),
    "yolo12l": (26_450_784, 96.295), "yolo12x": (59_210_784, 210.146),
}


def meta_model(name: str) -> DetectionModel:
    """The model ``name`` (e.g. ``yolo11x``) laid out on the meta device: counts without weights or a probe."""
    d = resolve_scale(load_model_yaml(CONFIGS / "models" / f"{name}.yaml"))
    with torch.device("meta"):
        layers, save, _ = parse_layers(d, 3)
    return DetectionModel(layers, save, d)


@pytest.mark.parametrize("name", PARITY)
def test_parameter_parity(name):
    assert count_params(meta_model(name)) == PARITY[name][0]


@pytest.mark.parametrize("name, params", [("yolov8n-p2", 3_354_144), ("yolov8n-p6", 4_984_352)])
def test_p2_p6_variants(name, params):
    """yolov8n-p2.yaml reads yolov8-p2.yaml at scale n (Ultralytics' name rule); counts as Ultralytics 8.4's."""
    model = meta_model(name)
    assert model.yaml["scale"] == "n" and count_params(model) == params and model.head.nl == 4


@pytest.mark.parametrize("name", [n for n in PARITY if n.endswith("n")])
def test_gflops_parity_n(name):
    assert count_gflops(meta_model(name), 640) == pytest.approx(PARITY[name][1], rel=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in PARITY if not n.endswith("n")])
def test_gflops_parity_larger_scales(name):
    assert count_gflops(meta_model(name), 640) == pytest.approx(PARITY[name][1], rel=1e-3)


def test_scale_from_file_name_explicit_or_first(caplog):
    d = resolve_scale(load_model_yaml(CONFIGS / "models" / "yolov8s.yaml"))  # no such file: yolov8.yaml at s
    assert (d["yaml_file"], d["scale"], d["depth_multiple"], d["width_multiple"], d["max_channels"]) == (
        "yolov8s.yaml", "s", 0.33, 0.50, 1024)
    assert resolve_scale(load_model_yaml(CONFIGS / "models" / "yolo11m.yaml"), "x")["scale"] == "x"
    with caplog.at_level(logging.WARNING, logger="yolo_attn.nn"):
        assert resolve_scale(load_model_yaml(CONFIGS / "models" / "yolo12.yaml"))["scale"] == "n"
    assert "assuming scale='n'" in caplog.text
    with pytest.raises(ModelConfigError, match="not among"):
        resolve_scale(load_model_yaml(CONFIGS / "models" / "yolo11.yaml"), "q")
    with pytest.raises(ModelConfigError, match="no top-level 'scales'"):
        build_model(CONFIGS / "models" / "yolov5n.yaml", scale="s")


def test_per_scale_block_flags():
    """Ultralytics forces C3k2's c3k at m/l/x and A2C2f's residual (gamma, mlp 1.2) at l/x."""
    assert type(meta_model("yolo11s").model[2].m[0]).__name__ == "Bottleneck"
    assert type(meta_model("yolo11m").model[2].m[0]).__name__ == "C3k"
    large, medium = meta_model("yolo12l").model[6], meta_model("yolo12m").model[6]
    assert large.gamma is not None and medium.gamma is None
    assert large.m[0][0].mlp[0].conv.out_channels == int(256 * 1.2)


def test_width_cap_and_head_layouts():
    v8x, v11n = meta_model("yolov8x"), meta_model("yolo11n")
    assert v8x.model[9].cv2.conv.out_channels == 640  # min(1024, 512) * 1.25
    assert isinstance(v8x.head, AnchorFreeDetect) and isinstance(v11n.head, AnchorFreeDetect)
    assert isinstance(v8x.head.cv3[0][0].conv, torch.nn.Conv2d) and v8x.head.cv3[0][0].conv.groups == 1
    assert v11n.head.cv3[0][0][0].conv.groups == 64  # YOLO11's depth-wise class branch
    contract = head_contract(v11n.head)
    assert (contract.default_loss, contract.anchor_based, contract.objectness) == ("v8", False, False)


def test_forward_shapes_keys_and_bias_priors():
    model = build_model(CONFIGS / "models" / "yolov8n.yaml", nc=4)
    keys = model.state_dict().keys()
    for key in ("model.22.cv2.0.0.conv.weight", "model.22.cv3.2.1.bn.running_var", "model.22.cv3.1.2.bias",
                "model.22.dfl.conv.weight", "model.2.m.0.cv1.bn.running_var", "model.9.cv2.conv.weight"):
        assert key in keys
    assert model.stride.tolist() == [8.0, 16.0, 32.0]
    assert torch.all(model.head.cv2[1][-1].bias == 2.0)
    assert model.head.cv3[2][-1].bias[0].item() == pytest.approx(torch.log(torch.tensor(5 / 4 / 20**2)).item())
    x = torch.rand(2, 3, 128, 160)
    assert [tuple(o.shape) for o in model.train()(x)] == [(2, 68, 16, 20), (2, 68, 8, 10), (2, 68, 4, 5)]
    decoded, raw = model.eval()(x)
    assert decoded.shape == (2, 16 * 20 + 8 * 10 + 4 * 5, 8) and len(raw) == 3
    assert decoded[..., 4:].min() >= 0 and decoded[..., 4:].max() <= 1
    model.head.export = True  # the exporter's switch: the decoded tensor alone
    assert model(torch.rand(1, 3, 64, 96)).shape == (1, 8 * 12 + 4 * 6 + 2 * 3, 8)


@pytest.mark.parametrize("name", ["yolov8n", "yolo11n", "yolo12n"])
def test_outputs_match_ultralytics(name):
    """Ultralytics' weights (seeded by key) load strictly by key; decoded outputs match theirs, unfused and fused."""
    fixture = torch.load(FIXTURES / f"{name}.pt", weights_only=True)
    model = build_model(CONFIGS / "models" / f"{name}.yaml")
    assert sorted(model.state_dict()) == fixture["keys"]
    shapes = dict(zip(fixture["keys"], map(tuple, fixture["shapes"]), strict=True))
    model.load_state_dict(seeded_state_dict(shapes), strict=True)
    x = seeded_input()
    assert list(x.shape) == fixture["input_shape"]
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], fixture["decoded"], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(model.fuse()(x)[0], fixture["decoded_fused"], rtol=1e-4, atol=1e-4)


def test_insert_cbam_into_yolo11n_builds():
    text = (CONFIGS / "models" / "yolo11.yaml").read_text()
    d = {**yaml.safe_load(text), "yaml_file": "yolo11n.yaml"}
    args = default_block_args(d, 10, "CBAM")
    assert args == [1024]  # 256 channels at width 0.25
    edited = yaml.safe_load(insert_block(text, 10, "CBAM", args, rewire_all=True))
    model = build_model({**edited, "yaml_file": "yolo11n-CBAM.yaml"})
    assert count_params(model) == PARITY["yolo11n"][0] + 8_290
    assert model.model[11].type == "CBAM" and model.head.f == [17, 20, 23]


@pytest.mark.parametrize("block, params", [
    ("CBAM", 2_632_370), ("GAMAttention", 3_059_536), ("BAM", 2_641_409), ("DoubleAttention", 2_673_648),
    ("CloAttention", 2_930_256),
])
def test_yolo11n_attention_seed_configs(block, params):
    d = resolve_scale(load_model_yaml(CONFIGS / "attention" / f"yolo11n-{block}.yaml"))
    assert d["scale"] == "n"
    with torch.device("meta"):
        layers, save, _ = parse_layers(d, 3)
    assert count_params(DetectionModel(layers, save, d)) == params


def test_ultralytics_block_errors_name_the_layer():
    d = load_model_yaml(CONFIGS / "models" / "yolo11.yaml")
    d["backbone"][10] = [-1, 2, "C2PSA", [512]]
    with pytest.raises(ModelConfigError, match=r"layer 10 .*C2PSA keeps its input channels"):
        build_model(d, scale="n")
    d = load_model_yaml(CONFIGS / "models" / "yolo12.yaml")
    d["backbone"][6] = [-1, 4, "A2C2f", [320, True, 4]]
    with pytest.raises(ModelConfigError, match="multiple of 32"):
        build_model(d, scale="n")
