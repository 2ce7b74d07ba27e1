"""YOLOv10's and YOLO26's backbone and neck blocks against Ultralytics 8.4.190: per-config parameter counts and
state-dict keys of every layer before the head, per-block keys and counts, SPPF's two YAML forms, the per-scale
C3k2 / C2fCIB layouts, and outputs equal to Ultralytics' own on the committed fixture
(tests/fixtures/ultralytics/yolov10_yolo26_blocks.pt, see its README)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import torch
from torch import nn

from tests.conftest import CONFIGS, ROOT
from tests.nn.ultralytics_weights import seeded_state_dict
from yolo_attn.nn.blocks.conv import Conv
from yolo_attn.nn.blocks.csp import Bottleneck
from yolo_attn.nn.blocks.pooling import SPPF
from yolo_attn.nn.blocks.ultralytics import C3k, C3k2, PSABlock
from yolo_attn.nn.blocks.yolov10 import CIB, PSA, C2fCIB, RepVGGDW
from yolo_attn.nn.builder import load_model_yaml, parse_layers, resolve_scale
from yolo_attn.nn.model import DetectionModel
from yolo_attn.nn.registry import lookup
from yolo_attn.nn.rules import LayerContext

FIXTURE = ROOT / "tests" / "fixtures" / "ultralytics" / "yolov10_yolo26_blocks.pt"

# Every layer before the head, from Ultralytics 8.4.190's DetectionModel (nc 80): parameters, state-dict entries, and
# the first 16 hex digits of the SHA-1 of the sorted lines "<layer>.<key>:[<shape>]" joined by newlines.
PRE_HEAD = {
    "yolov10n:n": (1_845_712, 354, "0bfee15f4f9602ab"),
    "yolov10s:s": (6_427_552, 378, "b357c3a20a3fd62e"),
    "yolov10m:m": (14_203_152, 558, "f9bc90e40ff8f79f"),
    "yolov10b:b": (17_628_992, 594, "ce293ea47a4d965d"),
    "yolov10l:l": (22_943_296, 786, "7ff4323b73e70f30"),
    "yolov10x:x": (27_269_840, 894, "5aaacd4f4eb4513b"),
    "yolo26:n": (2_262_624, 468, "65ac9ffe58cb86f7"),
    "yolo26:s": (9_016_000, 468, "fc800e8f56ce336d"),
    "yolo26:m": (18_974_272, 528, "cd369f1d2ac9bcf6"),
    "yolo26:l": (23_377_728, 852, "ff6691b5429dd22c"),
    "yolo26:x": (52_552_416, 852, "573c5b1d2d86c6b2"),
    "yolo26-p2:n": (2_304_672, 582, "9c9b9cbad1d6c347"),
    "yolo26-p2:s": (9_182_528, 582, "07ac0873e5031caa"),
    "yolo26-p2:m": (19_637_056, 642, "6ed9cfdef3b0f69c"),
    "yolo26-p2:l": (24_308_288, 1050, "6cfbe14bf291b05b"),
    "yolo26-p2:x": (54_642_528, 1050, "b96109845fb60fa2"),
    "yolo26-p6:n": (3_630_944, 642, "e08726ad0f3db0d5"),
    "yolo26-p6:s": (14_478_528, 642, "7eecf86817b5bff0"),
    "yolo26-p6:m": (28_360_256, 702, "7a81075db2a6ebdc"),
    "yolo26-p6:l": (35_325_760, 1152, "a13c74d5f0bb4e35"),
    "yolo26-p6:x": (79_420_128, 1152, "9b67d56f32493d87"),
}

# Fixture case -> (YAML name, YAML args, input channels, YAML number, parameters in Ultralytics 8.4.190).
# Each block is built through its registered rule, so the YAML line -> constructor mapping is checked too.
BLOCK_CASES = {
    "RepVGGDW": ("RepVGGDW", [16], 16, 1, 992),
    "CIB": ("CIB", [16, 16, True, 0.5, False], 16, 1, 1_104),
    "CIB_lk": ("CIB", [16, 16, True, 0.5, True], 16, 1, 1_920),
    "C2fCIB": ("C2fCIB", [32, True, True], 24, 2, 9_856),
    "PSA": ("PSA", [256], 256, 1, 249_728),
    "SPPF_yolo26": ("SPPF", [32, 5, 3, True], 32, 1, 2_656),
    "SPPF_yolov5": ("SPPF", [16, 5], 32, 1, 1_600),
    "C3k2_attn": ("C3k2", [128, True, 0.5, True], 64, 1, 100_480),
    "C2PSA": ("C2PSA", [128], 128, 2, 93_568),
}


def pre_head_layers(stem: str, scale: str) -> nn.Sequential:
    """The layers of ``configs/models/<stem>.yaml`` at ``scale`` up to the head (excluded), on the meta device."""
    d = load_model_yaml(CONFIGS / "models" / f"{stem}.yaml")
    d["head"] = d["head"][:-1]
    resolve_scale(d, scale)
    with torch.device("meta"):
        layers, _, _ = parse_layers(d, 3)
    return layers


def layer_context(c1: int, number: int = 1) -> LayerContext:
    """A layer reading ``c1`` channels in an unscaled Ultralytics-schema model."""
    return LayerContext(index=1, c_in=(c1,), number=number, width_multiple=1.0, channel_multiple=8, nc=80,
                        num_outputs=85 * 3, schema="ultralytics")


def build_from_line(name: str, args: list[Any], c1: int, number: int = 1) -> tuple[nn.Module, list[Any]]:
    """The block a YAML line ``[-1, number, name, args]`` builds after ``c1`` channels, and its constructor args."""
    spec = lookup(name, "ultralytics")
    resolved = spec.rule.resolve(list(args), layer_context(c1, number))
    assert resolved.number == 1
    return (resolved.block or spec.cls)(*resolved.args), resolved.args


@pytest.fixture(scope="module")
def fixture() -> dict[str, Any]:
    return torch.load(FIXTURE, weights_only=True)


@pytest.mark.parametrize("config", PRE_HEAD)
def test_backbone_and_neck_match_ultralytics(config):
    stem, scale = config.split(":")
    layers = pre_head_layers(stem, scale)
    lines = sorted(f"{i}.{k}:{list(v.shape)}" for i, layer in enumerate(layers) for k, v in layer.state_dict().items())
    params = sum(p.numel() for p in layers.parameters())
    digest = hashlib.sha1("\n".join(lines).encode()).hexdigest()[:16]
    assert (params, len(lines), digest) == PRE_HEAD[config]


@pytest.mark.parametrize("case", BLOCK_CASES)
def test_block_keys_params_and_outputs_match_ultralytics(case, fixture):
    """Ultralytics' constructor args, keys and counts; seeded weights loaded by key give Ultralytics' eval outputs."""
    name, args, c1, number, params = BLOCK_CASES[case]
    reference = fixture["cases"][case]
    block, built_args = build_from_line(name, args, c1, number)
    expected_args = [*reference["args"], False] if case == "SPPF_yolo26" else reference["args"]  # linear cv1
    assert built_args == expected_args
    assert sorted(block.state_dict()) == reference["keys"]
    assert sum(p.numel() for p in block.parameters()) == params == reference["params"]
    shapes = dict(zip(reference["keys"], map(tuple, reference["shapes"]), strict=True))
    block.load_state_dict(seeded_state_dict(shapes), strict=True)
    x = torch.rand(reference["input_shape"], generator=torch.Generator().manual_seed(fixture["input_seed"])) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(block.eval()(x), reference["output"], rtol=1e-5, atol=1e-5)
        if "output_fused" in reference:
            block.fuse()
            torch.testing.assert_close(block(x), reference["output_fused"], rtol=1e-5, atol=1e-5)


def test_sppf_yolov5_line_keeps_its_meaning():
    """``[c2, k]``: SPPF(c1, c2, k) as before, activated cv1, three pools, no residual, the same keys."""
    block, args = build_from_line("SPPF", [64, 5], 64)
    assert args == [64, 64, 5]
    assert isinstance(block.cv1.act, nn.SiLU) and block.n == 3 and not block.add
    assert block.cv2.conv.in_channels == 4 * 32
    assert sorted(k.split(".")[0] for k in block.state_dict()) == ["cv1"] * 6 + ["cv2"] * 6
    x = torch.randn(2, 64, 9, 7)
    with torch.no_grad():
        block.eval()
        y1 = block.m(block.cv1(x))
        y2 = block.m(y1)
        torch.testing.assert_close(block(x), block.cv2(torch.cat((block.cv1(x), y1, y2, block.m(y2)), 1)))


def test_sppf_yolo26_lines():
    """``[c2, k, n, shortcut]`` (YOLO26): linear cv1, ``n`` pools, a residual only when the widths match."""
    block, args = build_from_line("SPPF", [64, 5, 3, True], 64)
    assert args == [64, 64, 5, 3, True, False]
    assert isinstance(block.cv1.act, nn.Identity) and block.add
    assert not build_from_line("SPPF", [64, 5, 3, True], 32)[0].add
    assert not build_from_line("SPPF", [64, 5, 3, False], 64)[0].add
    short, args = build_from_line("SPPF", [64, 3, 2], 64)
    assert args == [64, 64, 3, 2, False, False] and short.cv2.conv.in_channels == 3 * 32
    assert isinstance(short.cv1.act, nn.Identity) and short.m.kernel_size == 3
    with pytest.raises(ValueError, match="at most"):
        build_from_line("SPPF", [64, 5, 3, True, False], 64)


def test_sppf_in_the_shipped_configs():
    v10n, y26n = pre_head_layers("yolov10n", "n"), pre_head_layers("yolo26", "n")
    y26p6 = pre_head_layers("yolo26-p6", "n")
    assert all(isinstance(b, SPPF) for b in (v10n[9], y26n[9], y26p6[11]))
    assert isinstance(v10n[9].cv1.act, nn.SiLU) and not v10n[9].add
    assert isinstance(y26n[9].cv1.act, nn.Identity) and y26n[9].add
    assert isinstance(y26p6[11].cv1.act, nn.Identity) and not y26p6[11].add


def test_per_scale_layouts():
    """C3k2: e=0.25 lines, c3k forced at m/l/x, attention winning over c3k; C2fCIB's large kernel; C2PSA depth."""
    n, m = pre_head_layers("yolo26", "n"), pre_head_layers("yolo26", "m")
    assert isinstance(n[2], C3k2) and n[2].c == 16 and type(n[2].m[0]) is Bottleneck
    assert isinstance(m[2].m[0], C3k)
    assert [type(b) for b in m[22].m[0]] == [Bottleneck, PSABlock] and m[22].m[0][1].attn.num_heads == 4
    assert len(n[10].m) == 1 and len(pre_head_layers("yolo26", "l")[10].m) == 2
    s, v10m = pre_head_layers("yolov10s", "s"), pre_head_layers("yolov10m", "m")
    assert isinstance(s[22], C2fCIB) and isinstance(s[22].m[0], CIB) and isinstance(s[22].m[0].cv1[2], RepVGGDW)
    assert isinstance(v10m[22].m[0].cv1[2], Conv) and isinstance(v10m[10], PSA)
    assert C2fCIB.depthwise_detect_head  # Ultralytics' Detect turns non-legacy with it, as with C3k2


def test_rules_check_channels():
    with pytest.raises(ValueError, match="input has 16 channels"):
        build_from_line("RepVGGDW", [32], 16)
    with pytest.raises(ValueError, match="input has 16 channels"):
        build_from_line("CIB", [16, 32], 16)
    with pytest.raises(ValueError, match="PSA keeps its input channels"):
        build_from_line("PSA", [128], 256)


def test_fused_yolov10_stage_keeps_its_outputs():
    """``DetectionModel.fuse()`` folds RepVGGDW (inside C2fCIB) and every Conv; eval outputs stay."""
    d = {"nc": 80, "backbone": [[-1, 1, "Conv", [32, 3, 2]], [-1, 2, "C2fCIB", [32, True, True]],
                                [-1, 1, "PSA", [32]]], "head": [[-1, 1, "SPPF", [32, 5, 3, True]]]}
    layers, save, _ = parse_layers(d, 3)
    model = DetectionModel(layers, save, d)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    model.load_state_dict(seeded_state_dict(shapes), strict=True)
    x = torch.rand(1, 3, 32, 24, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        before = model.eval()(x)
        model.fuse()
        assert all(b.cv1[2].conv1 is None for b in model.model[1].m)
        assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
        torch.testing.assert_close(model(x), before, rtol=1e-4, atol=1e-4)
