"""Bad model YAML gives one ModelConfigError naming the file, the layer index and its YAML entry."""

import copy

import pytest
import torch
import yaml

from tests.conftest import CONFIGS
from yolo_attn import ModelConfigError, build_model
from yolo_attn.errors import UserError
from yolo_attn.nn.resource_guard import ENV_MAX_PARAMS, ResourceGuard, ResourceLimits, resolve_limits


@pytest.fixture(scope="module")
def yolov5n() -> dict:
    return yaml.safe_load((CONFIGS / "models" / "yolov5n.yaml").read_text())


@pytest.fixture(scope="module")
def yolov7_tiny() -> dict:
    return yaml.safe_load((CONFIGS / "models" / "yolov7-tiny.yaml").read_text())


def with_layer(cfg: dict, index: int, entry: list) -> dict:
    """A copy of ``cfg`` with layer ``index`` (counted over backbone + head) replaced."""
    cfg = copy.deepcopy(cfg)
    n_backbone = len(cfg["backbone"])
    section, i = ("backbone", index) if index < n_backbone else ("head", index - n_backbone)
    cfg[section][i] = entry
    return cfg


def build_error(cfg, **kwargs) -> str:
    with pytest.raises(ModelConfigError) as info:
        build_model(cfg, **kwargs)
    assert isinstance(info.value, UserError)
    return str(info.value)


def test_unknown_block_suggests_registered_names(yolov5n):
    message = build_error(with_layer(yolov5n, 9, [-1, 1, "SPPFF", [1024, 5]]))
    assert "layer 9 [-1, 1, SPPFF, [1024, 5]]" in message
    assert "unknown block 'SPPFF'" in message and "did you mean SPPF" in message


def test_error_names_the_yaml_file(tmp_path, yolov5n):
    path = tmp_path / "my-model.yaml"
    path.write_text(yaml.safe_dump(with_layer(yolov5n, 2, [-1, 1, "C4", [128]])))
    message = build_error(path)
    assert message.startswith("my-model.yaml: layer 2 [-1, 1, C4, [128]]")
    assert "did you mean" in message and "C3" in message


@pytest.mark.parametrize(
    "index, source, expected",
    [(3, -9, "'from' index -9 is before layer 0"), (3, 5, "'from' index 5 points forward"),
     (3, 3, "'from' index 3 points forward or to itself"), (0, 0, "the first layer can only read the input"),
     (12, [-1, 40], "'from' index 40 points forward")],
)
def test_from_out_of_range(yolov5n, index, source, expected):
    message = build_error(with_layer(yolov5n, index, [source, 1, "Conv", [256, 3, 2]]))
    assert f"layer {index} [{source}".replace("'", "") in message.replace("'", "")
    assert expected in message


@pytest.mark.parametrize(
    "entry, expected",
    [([-1, 1, "Conv", [512, 3, 2, None, 1, True, 1, 9]], "wrong arguments for Conv"),
     ([-1, 1, "Conv", [512, 3.5, 2]], "wrong arguments for Conv"),
     ([-1, 1, "Conv", ["wide", 3, 2]], "expects output channels as its first arg"),
     ([-1, 1, "MP", [2, 2, 2]], "wrong arguments for MP"),
     ([-1, 0, "Conv", [512, 3, 2]], "'number' must be a positive int"),
     ([-1, 1, "Conv", 512], "'args' must be a list"),
     ([-1, 1, "Conv"], "each layer must be [from, number, module, args]"),
     ([-1, 1, "ImplicitA", [7]], "channel 7 does not match the input's 64 channels")],
)
def test_wrong_args(yolov5n, entry, expected):
    message = build_error(with_layer(yolov5n, 5, entry))
    assert message.startswith("model YAML: layer 5 [")
    assert expected in message


@pytest.mark.parametrize("key", ["backbone", "head", "nc"])
def test_missing_top_level_keys(yolov5n, key):
    cfg = copy.deepcopy(yolov5n)
    del cfg[key]
    assert f"missing the top-level key '{key}'" in build_error(cfg)


@pytest.mark.parametrize(
    "key, value, expected",
    [("nc", "eighty", "'nc' must be a positive int"), ("depth_multiple", "x", "'depth_multiple' must be a positive"),
     ("anchors", [], "'anchors' must be"),
     ("anchors", [[10, 13, 16], [30, 61, 62], [116, 90, 156]], "'anchors' must be"),
     ("head", {"a": 1}, "'head' must be a list")],
)
def test_bad_top_level_values(yolov5n, key, value, expected):
    cfg = copy.deepcopy(yolov5n)
    cfg[key] = value
    assert expected in build_error(cfg)


def test_spatial_mismatch_found_while_tracing(yolov5n):
    message = build_error(with_layer(yolov5n, 12, [[-1, 4], 1, "Concat", [1]]))
    assert "layer 12 [[-1, 4], 1, Concat, [1]]: shape mismatch while tracing" in message
    assert "with input (C, H, W) [(128, 16, 16), (64, 32, 32)]" in message


def test_channel_mismatch_found_while_tracing(yolov5n):
    message = build_error(with_layer(yolov5n, 10, [[-1, 6], 1, "Shortcut", [1]]))
    assert "layer 10 [[-1, 6], 1, Shortcut, [1]]: shape mismatch while tracing" in message


def test_detect_anchor_levels_must_match_inputs(yolov7_tiny):
    message = build_error(with_layer(yolov7_tiny, 77, [[74, 75], 1, "IDetect", ["nc", "anchors"]]))
    assert "layer 77 [[74, 75], 1, IDetect, [nc, anchors]]" in message and "3 anchor levels but 2 inputs" in message
    message = build_error(with_layer(yolov7_tiny, 77, [[74, 75, 76], 1, "IAuxDetect", ["nc", "anchors"]]))
    assert "3 anchor levels but 3 inputs (2 per anchor level expected)" in message


def pwn(marker) -> str:
    return f"__import__('os').system('touch {marker}')"


@pytest.mark.parametrize("where", ["arg", "module", "activation", "activation arg", "number"])
def test_injection_is_an_error_and_never_runs(tmp_path, yolov7_tiny, where):
    marker = tmp_path / "pwned"
    cfg = copy.deepcopy(yolov7_tiny)
    if where == "arg":
        cfg = with_layer(cfg, 3, [-2, 1, "Conv", [32, 1, 1, None, 1, pwn(marker)]])
    elif where == "module":
        cfg = with_layer(cfg, 3, [-2, 1, pwn(marker), [32]])
    elif where == "activation":
        cfg["activation"] = pwn(marker)
    elif where == "activation arg":
        cfg["activation"] = f"nn.LeakyReLU({pwn(marker)})"
    else:
        cfg = with_layer(cfg, 3, [-2, pwn(marker), "Conv", [32]])
    message = build_error(cfg)
    assert "layer 3" in message or "'activation'" in message
    assert not marker.exists()


@pytest.mark.parametrize(
    "entry, expected",
    [([-1, 1, "Conv", [512, float("nan"), 2]], "nan is not a finite number"),
     ([-1, 1, "Conv", [512, 3, {"stride": 2}]], "a dict is not a model-YAML value"),
     ([-1, 1, "Conv", [512, [[[[3]]]]]], "nested more than 3 deep"),
     ([-1, 1, "Conv", [2**70, 3]], "beyond 64-bit integers"),
     ([-1, 1, "Conv", [0, 3, 2]], "expects output channels as its first arg (a positive int)"),
     ([-1, 1, "Conv", [True, 3, 2]], "expects output channels as its first arg (a positive int)"),
     ([-1, 1, "Conv", [512, 3, 2, None, 1, "nn.PReLU(1000000000)"]], "numbers within +-10,000"),
     ([-1, 1, "Conv", [512, 3, 2, None, 1, "nn.ReLU(1, 2, 3)"]], "not a valid activation"),
     ([-1, 1, "Conv", [512, 3, 2, None, 1, "nn.SiLU(**1)"]], "** arguments are not allowed in an activation"),
     ([-1, 1, "Expand", [64]], "gives 0 output channels for 64 input channels")],
)
def test_junk_values_are_named(yolov5n, entry, expected):
    message = build_error(with_layer(yolov5n, 5, entry))
    assert message.startswith("model YAML: layer 5 [") and expected in message


@pytest.mark.parametrize(
    "key, value, expected",
    [("activation", 7, "'activation': 7 is not an activation"), ("activation", ["nn.SiLU()"], "is not an activation"),
     ("width_multiple", float("nan"), "'width_multiple' must be a positive float"),
     ("depth_multiple", float("inf"), "'depth_multiple' must be a positive float"),
     ("ch", "three", "'ch' must be a positive int"), ("ch", [3], "'ch' must be a positive int")],
)
def test_junk_top_level_values(yolov5n, key, value, expected):
    assert expected in build_error({**yolov5n, key: value})


def test_exception_inside_a_block_is_wrapped_with_its_cause(yolov5n, monkeypatch):
    from yolo_attn.nn import registry

    class Broken(torch.nn.Module):
        def __init__(self, c1: int, c2: int):
            super().__init__()
            c2.dim()  # a bug in a block: AttributeError

    monkeypatch.setitem(registry._BLOCKS, "Broken", registry.BlockSpec("Broken", Broken, registry.lookup("Conv").rule))
    with pytest.raises(ModelConfigError) as info:
        build_model(with_layer(yolov5n, 5, [-1, 1, "Broken", [256]]))
    assert "layer 5 [-1, 1, Broken, [256]]: AttributeError while building: 'int' object has no attribute 'dim'" in str(
        info.value
    )
    assert isinstance(info.value.__cause__, AttributeError)


@pytest.mark.parametrize(
    "index, entry, expected",
    [(5, [-1, 10**6, "Conv", [256, 3, 2]], "'number' 330,000 (stacked copies"),
     (2, [-1, 10**6, "C3", [128]], "sub-modules"),
     (5, [-1, 1, "Conv", [10**7, 3, 2]], "counted before allocating); the total"),
     (0, [-1, 1, "Conv", [16, 10**4, 1]], "counted before allocating); the total"),
     (11, [-1, 1, "nn.Upsample", [None, 1000, "nearest"]], "bytes in the stride probe is above the limit"),
     (11, [-1, 4096, "nn.Upsample", [None, 2, "nearest"]], "bytes in the stride probe is above the limit"),
     (0, [-1, 1, "Conv", [16, 3000, 1]], "the stride probe's FLOPs")],
)
def test_resource_guard_refuses_before_allocating(yolov5n, index, entry, expected):
    message = build_error(with_layer(yolov5n, index, entry))
    assert message.startswith(f"model YAML: layer {index} [") and expected in message
    assert "limits=None" in message and "YOLO_ATTN_MAX_PARAMS=none" in message


@pytest.mark.parametrize(
    "key, value, expected",
    [("width_multiple", 1e9, "'width_multiple' 1e+09 is above the limit"), ("nc", 10**9, "'nc' 1,000,000,000 is above"),
     ("depth_multiple", 5000, "'depth_multiple' 5000 is above"), ("anchors", 10**6, "1,000,000 anchors per level"),
     ("ch", 10**6, "top-level 'ch': the stride probe input")],
)
def test_resource_guard_top_level(yolov5n, key, value, expected):
    assert expected in build_error({**yolov5n, key: value})


def test_limits_are_lifted_by_keyword_and_environment(yolov5n, monkeypatch):
    small = ResourceLimits(params=1_000_000)
    assert "counted before allocating); the total is above the limit of 1,000,000" in build_error(yolov5n, limits=small)
    assert sum(p.numel() for p in build_model(yolov5n, limits=None).parameters()) == 1_872_157
    monkeypatch.setenv(ENV_MAX_PARAMS, "1e6")
    assert "above the limit of 1,000,000" in build_error(yolov5n)
    monkeypatch.setenv(ENV_MAX_PARAMS, "none")
    assert resolve_limits("env") is None
    monkeypatch.setenv(ENV_MAX_PARAMS, "lots")
    with pytest.raises(UserError, match="YOLO_ATTN_MAX_PARAMS must be a positive number"):
        build_model(yolov5n)


def test_unexpected_exception_while_tracing_keeps_its_cause(yolov5n):
    with pytest.raises(ModelConfigError) as info:
        build_model(with_layer(yolov5n, 11, [[-1, 6], 1, "nn.Upsample", [None, 2, "nearest"]]))
    assert "layer 11 [[-1, 6], 1, nn.Upsample, [null, 2, nearest]]: AttributeError while tracing" in str(info.value)
    assert "'list' object has no attribute 'dim'" in str(info.value)
    assert isinstance(info.value.__cause__, AttributeError)


def test_only_shipped_configs_skip_the_guards_dry_run(yolov5n, monkeypatch):
    """A config that comes with yolo-attn (whatever its nc and ch) builds without the per-layer dry run."""
    dry_runs = []
    monkeypatch.setattr(ResourceGuard, "check_forward", lambda self, index, x: dry_runs.append(index))
    build_model({**yolov5n, "nc": 3, "ch": 3})
    assert dry_runs == []
    build_model({**yolov5n, "depth_multiple": 0.34})
    assert dry_runs == list(range(25))
