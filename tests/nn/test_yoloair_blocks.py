"""YOLOAir's module collection: each block's output shape, and YOLOAir's exact parameter counts for the
YOLOAir model YAMLs under ``tests/fixtures/yoloair/configs`` (counts measured with YOLOAir's own
``models/yolo.py``; ``scripts/yoloair_coverage.py`` runs the whole collection)."""

import json
from pathlib import Path

import pytest
import torch

from yolo_attn import build_model
from yolo_attn.nn.builder import ModelConfigError
from yolo_attn.nn.registry import lookup
from yolo_attn.nn.summary import count_params

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "yoloair"
COUNTS: dict[str, int] = json.loads((FIXTURES / "param_counts.json").read_text())
CONFIGS = sorted(p.relative_to(FIXTURES).as_posix() for p in (FIXTURES / "configs").rglob("*.yaml"))


def block(name: str, *args):
    return lookup(name).cls(*args)


# (block name, constructor args, input shape (C, H, W), output shape (C, H, W)); batch 2
SHAPES = [
    ("HorBlock", (16,), (16, 8, 8), (16, 8, 8)),
    ("ConvNextBlock", (16,), (16, 8, 8), (16, 8, 8)),
    ("ConvNeXt", (1, [1, 1, 1, 1], 8), (8, 16, 16), (16, 8, 8)),
    ("HorNet", (0, 3, [1, 1, 1, 1], 8), (3, 32, 32), (8, 8, 8)),
    ("RepVGGBlock", (16, 32, 3, 2), (16, 16, 16), (32, 8, 8)),
    ("MobileOneBlock", (16, 16, 2), (16, 8, 8), (16, 8, 8)),
    ("MobileOne", (16, 16, 2, 2, 2), (16, 16, 16), (16, 4, 4)),  # two stride-2 blocks
    ("C3HB", (16, 32, 1), (16, 8, 8), (32, 8, 8)),
    ("BottleneckCSPF", (16, 32, 2), (16, 8, 8), (32, 8, 8)),
    ("BottleneckCSP2", (16, 32, 2), (16, 8, 8), (32, 8, 8)),
    ("CoT3", (16, 32, 1), (16, 8, 8), (32, 8, 8)),
    ("BoT3", (16, 32, 1), (16, 8, 8), (32, 8, 8)),
    ("C3GC", (16, 32, 1), (16, 8, 8), (32, 8, 8)),
    ("C3RFEM", (16, 32, 1), (16, 8, 8), (32, 8, 8)),
    ("C3STR", (64, 128, 2), (64, 12, 10), (128, 12, 10)),  # padded to the 8x8 windows, shifted second layer
    ("SEAM", (16, 16, 1), (16, 8, 8), (16, 8, 8)),
    ("MultiSEAM", (16, 16, 1, 3, [2, 3, 4]), (16, 12, 12), (16, 12, 12)),
    ("gnconv", (16, 3), (16, 8, 8), (16, 8, 8)),
    ("VoVGSCSP", (16, 32, 1), (16, 8, 8), (32, 8, 8)),
    ("SPPCSP", (16, 32), (16, 8, 8), (32, 8, 8)),
    ("SPPFCSPC", (16, 32), (16, 8, 8), (32, 8, 8)),
    ("SPPCSPC_group", (16, 32), (16, 8, 8), (32, 8, 8)),
    ("SimSPPF", (16,), (16, 8, 8), (16, 8, 8)),
    ("ASPP", (16, 32), (16, 8, 8), (32, 8, 8)),
    ("BasicRFB", (16, 32), (16, 8, 8), (32, 8, 8)),
    ("CBH", (3, 16, 3, 2), (3, 16, 16), (16, 8, 8)),
    ("GSConv", (16, 32, 3, 2), (16, 16, 16), (32, 8, 8)),
    ("space_to_depth", (), (16, 16, 16), (64, 8, 8)),
    ("mobilev3_bneck", (16, 24, 64, 3, 2, 1, 1), (16, 16, 16), (24, 8, 8)),
    ("mobilev3_bneck", (16, 16, 16, 3, 1, 0, 0), (16, 8, 8), (16, 8, 8)),
    ("LC_Block", (16, 32, 2, 3, True), (16, 16, 16), (32, 8, 8)),
    ("Dense", (16, 32, 1, 0.2), (16, 8, 8), (32, 8, 8)),
    ("ES_Bottleneck", (16, 32, 2), (16, 16, 16), (32, 8, 8)),
    ("ES_Bottleneck", (32, 32, 1), (32, 8, 8), (32, 8, 8)),
    ("DWConvblock", (16, 32, 5, 2), (16, 16, 16), (32, 8, 8)),
    ("ConvBNLayer", (16, 32, 3, 2, 1, 1), (16, 16, 16), (32, 8, 8)),
    ("CSPResNet_CBS", (3, 32), (3, 16, 16), (32, 8, 8)),
    ("CSPResNet", (16, 32, 1, 2), (16, 16, 16), (32, 8, 8)),
    ("CSPResNet", (48, 32, 1, 1, "neck"), (48, 8, 8), (32, 8, 8)),
    ("ResSPP", (16, 32, 2), (16, 8, 8), (32, 8, 8)),
    ("nn.ConvTranspose2d", (16, 8, 4, 2, 1), (16, 8, 8), (8, 16, 16)),
    ("RepVGGBlockv6", (16, 16), (16, 8, 8), (16, 8, 8)),
    ("RepBlock", (16, 32, 3), (16, 8, 8), (32, 8, 8)),  # conv1 + 2 blocks
    ("MobileNetV3_InvertedResidual", (16, 24, 72, 3, 2, 1, 1), (16, 16, 16), (24, 8, 8)),
    ("conv_bn_hswish", (3, 16, 2), (3, 16, 16), (16, 8, 8)),
    ("DepthSepConv", (16, 32, 3, 2, True), (16, 16, 16), (32, 8, 8)),
    ("Conv_maxpool", (3, 24), (3, 32, 32), (24, 8, 8)),
    ("ShuffleNetV2_Model", (24, 48, 2), (24, 16, 16), (48, 8, 8)),
    ("ShuffleNetV2_Model", (48, 48, 1), (48, 8, 8), (48, 8, 8)),
    ("DWT", (), (16, 16, 16), (64, 8, 8)),
    ("CARAFE", (16, 32, 3, 2), (16, 8, 8), (32, 16, 16)),
    ("Involution", (32, 32, 3, 2), (32, 16, 16), (32, 8, 8)),
    ("RegNet1", (104,), (3, 64, 64), (104, 8, 8)),
    ("Efficient2", (112,), (40, 8, 8), (112, 4, 4)),
    ("MobileNet3", (576,), (48, 8, 8), (576, 4, 4)),
]


@pytest.mark.parametrize("name,args,shape_in,shape_out", SHAPES, ids=[f"{s[0]}-{i}" for i, s in enumerate(SHAPES)])
def test_block_output_shape(name, args, shape_in, shape_out):
    m = block(name, *args)
    x = torch.randn(2, *shape_in, requires_grad=True)
    y = m(x)
    assert tuple(y.shape) == (2, *shape_out)
    y.mean().backward()
    assert x.grad is not None


def test_add_sums_two_inputs():
    a, b = torch.ones(1, 4, 2, 2), torch.full((1, 4, 2, 2), 2.0)
    assert torch.equal(block("ADD", 0.5)([a, b]), torch.full((1, 4, 2, 2), 2.0))


def test_concat_bifpn_weights_two_or_three_inputs():
    m = block("Concat_bifpn", 8, 16)
    x = [torch.randn(2, 8, 4, 4) for _ in range(3)]
    assert m(x[:2]).shape == m(x).shape == (2, 16, 4, 4)


def test_dwt_of_a_constant_map_is_its_low_band():
    out = block("DWT")(torch.ones(1, 1, 4, 4))
    assert torch.allclose(out[:, 0], torch.ones(1, 2, 2)) and torch.allclose(out[:, 1:], torch.full((1, 3, 2, 2), 0.5))


def test_gsconv_shuffles_even_channels_first():
    m = block("GSConv", 4, 4)
    m.cv1 = m.cv2 = torch.nn.Identity()  # cat((x, x)) = channels 0 1 2 3 0 1 2 3
    out = m(torch.arange(4.0).view(1, 4, 1, 1))
    assert out.flatten().tolist() == [0.0, 2.0, 0.0, 2.0, 1.0, 3.0, 1.0, 3.0]


def yaml_with(line: list, c2: int = 32) -> dict:
    return {"nc": 2, "anchors": [[10, 13, 16, 30, 33, 23]], "backbone": [[-1, 1, "Conv", [c2, 3, 2]], line],
            "head": [[[-1], 1, "Detect", ["nc", "anchors"]]]}


def test_horblock_number_builds_one_block_and_checks_width():
    one = build_model(yaml_with([-1, 3, "HorBlock", [32]]))
    assert type(one.model[1]).__name__ == "HorBlock"  # YOLOAir: number lands in the layer-scale slot
    with pytest.raises(ModelConfigError, match="keeps its input channels"):
        build_model(yaml_with([-1, 1, "HorBlock", [64]]))


@pytest.mark.parametrize("head", ["DetectX", "Decoupled_Detect", "ASFF_Detect"])
def test_heads_with_their_own_loss_are_refused(head):
    d = yaml_with([-1, 1, "Conv", [32, 3, 2]])
    d["head"] = [[[-1], 1, head, ["nc", "anchors"]]]
    with pytest.raises(ModelConfigError, match=head):
        build_model(d)


@pytest.mark.slow
@pytest.mark.parametrize("cfg", CONFIGS)
def test_yoloair_parameter_count(cfg):
    assert count_params(build_model(FIXTURES / cfg)) == COUNTS[cfg]
