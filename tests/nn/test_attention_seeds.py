"""The blocks of the four attention tutorials the project started from -- "YOLOv7改进:GAMAttention注意力机制"
(YOLOv7 improved: GAMAttention), "YOLOv5/v7 添加注意力机制,30多种模块分析②,BAM模块,CBAM模块" (adding attention to
YOLOv5/v7: BAM and CBAM), "YOLO改进系列之注意力机制(CloAttention模型介绍)" (YOLO improvements, attention: CloAttention)
and "YOLOv5改进 | 注意力机制 | 添加双重注意力机制 DoubleAttention" (YOLOv5 improved: DoubleAttention) -- their
semantics checked against hand-written formulas, their YAML rules, and the two model configs the GAMAttention and
DoubleAttention posts publish at those posts' parameter counts.
The generic checks (shapes, gradients, batch 1, eval, 13x17, pinned counts) are in test_attention_zoo.py."""

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import CONFIGS
from yolo_attn import build_model
from yolo_attn.nn.attention.bam import BAM
from yolo_attn.nn.attention.cbam import CBAM
from yolo_attn.nn.attention.cloformer import CloAttention
from yolo_attn.nn.attention.double_attention import DoubleAttentionLayer
from yolo_attn.nn.attention.gam import GAMAttention
from yolo_attn.nn.builder import ModelConfigError
from yolo_attn.nn.registry import lookup
from yolo_attn.nn.summary import count_params


def seeded(cls, *args, **kwargs):
    torch.manual_seed(0)
    return cls(*args, **kwargs).eval()


def test_cbam_with_zero_weights_halves_twice():
    m = seeded(CBAM, 32)
    for p in m.parameters():
        torch.nn.init.zeros_(p)
    x = torch.randn(2, 32, 5, 7)
    assert torch.allclose(m(x), x * 0.25)  # sigmoid(0) from each branch


def test_cbam_matches_formula():
    m = seeded(CBAM, 32, rd_ratio=1 / 8, kernel_size=3)
    x = torch.randn(2, 32, 6, 5)
    f1, f2 = m.channel_attention.f1.weight[:, :, 0, 0], m.channel_attention.f2.weight[:, :, 0, 0]
    mlp = lambda v: F.relu(v @ f1.T) @ f2.T  # noqa: E731
    channel = torch.sigmoid(mlp(x.mean((2, 3))) + mlp(x.amax((2, 3))))[:, :, None, None]
    y = x * channel
    pooled = torch.stack((y.mean(1), y.amax(1)), 1)
    spatial = torch.sigmoid(F.conv2d(pooled, m.spatial_attention.conv.weight, padding=1))
    assert torch.allclose(m(x), y * spatial, atol=1e-6)


def test_gam_matches_seed_formula_with_channel_shuffle():
    m = seeded(GAMAttention, 32)
    for bn in (m.spatial_attention[1], m.spatial_attention[4]):  # non-trivial eval statistics
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 32, 5, 6)
    lin1, lin2 = m.channel_attention[0], m.channel_attention[2]
    channel = lin2(F.relu(lin1(x.permute(0, 2, 3, 1)))).permute(0, 3, 1, 2)  # no sigmoid, as in the GAMAttention post
    y = x * channel
    spatial = torch.sigmoid(m.spatial_attention(y))
    shuffled = torch.tensor([g * 8 + i for i in range(8) for g in range(4)])  # 4 groups of 8 interleaved
    assert shuffled[:6].tolist() == [0, 8, 16, 24, 1, 9]
    assert torch.allclose(m(x), y * spatial[:, shuffled], atol=1e-6)


def test_gam_ungrouped_has_dense_convs():
    grouped, dense = GAMAttention(32), GAMAttention(32, groups=1)
    assert count_params(dense) - count_params(grouped) == 2 * (32 * 8 * 49 - 32 * 8 * 49 // 4)


def test_bam_output_is_x_times_one_plus_sigmoid_of_branch_sum():
    m = seeded(BAM, 64)
    x = torch.randn(2, 64, 9, 11)
    fc1, fc2 = m.channel_gate[1], m.channel_gate[3]
    hidden = F.relu(x.mean((2, 3)) @ fc1.weight[:, :, 0, 0].T + fc1.bias)
    channel = (hidden @ fc2.weight[:, :, 0, 0].T + fc2.bias)[:, :, None, None]  # Mc: (b, c, 1, 1)
    spatial = m.spatial_gate(x)  # Ms: (b, 1, h, w)
    assert spatial.shape == (2, 1, 9, 11)
    assert torch.allclose(m(x), x * (1 + torch.sigmoid(channel + spatial)), atol=1e-6)


def test_bam_spatial_branch_is_dilated():
    dilated = [c for c in BAM(64).spatial_gate if isinstance(c, torch.nn.Conv2d) and c.kernel_size == (3, 3)]
    assert [c.dilation for c in dilated] == [(4, 4), (4, 4)]
    assert BAM(64, rd_ratio=1 / 8).spatial_gate[0].out_channels == 8


def test_double_attention_softmax_axes():
    # With A constant per channel, gathering (softmax over positions, sums to 1) and distributing (softmax
    # over the c_n descriptors, sums to 1) must both return that constant at every position.
    m = seeded(DoubleAttentionLayer, 16, c_m=4, c_n=3)
    torch.nn.init.zeros_(m.convA.weight)
    a = torch.randn(4)
    m.convA.bias.data.copy_(a)
    z = m(torch.randn(2, 16, 5, 7))
    assert torch.allclose(z, a.view(1, 4, 1, 1).expand(2, 4, 5, 7), atol=1e-5)


def test_double_attention_matches_einsum():
    m = seeded(DoubleAttentionLayer, 16, c_m=6, c_n=5, reconstruct=True)
    x = torch.randn(2, 16, 4, 3)
    a, b, v = (conv(x).flatten(2) for conv in (m.convA, m.convB, m.convV))
    g = torch.einsum("bmp,bnp->bmn", a, b.softmax(-1))
    z = torch.einsum("bmn,bnp->bmp", g, v.softmax(1)).view(2, 6, 4, 3)
    assert torch.allclose(m(x), m.conv_reconstruct(z), atol=1e-5)
    assert m(x).shape == x.shape


@pytest.mark.parametrize("window", [1, 2])
def test_clo_global_branch_is_softmax_attention_over_pooled_kv(window):
    m = seeded(CloAttention, 32, num_heads=4, group_split=[0, 4], kernel_sizes=[3], window_size=window)
    x = torch.randn(2, 32, 6, 4)
    heads = lambda t: t.view(2, 4, 8, -1).transpose(-1, -2)  # noqa: E731  (b, m, n, d)
    q = heads(m.global_q(x))
    k, v = m.global_kv(F.avg_pool2d(x, window)).split(32, 1)
    out = F.scaled_dot_product_attention(q, heads(k), heads(v)).transpose(-1, -2).reshape(2, 32, 6, 4)
    assert torch.allclose(m(x), m.proj(out), atol=1e-5)


def test_clo_local_branch_is_attnconv():
    m = seeded(CloAttention, 16, num_heads=2, group_split=[2, 0], kernel_sizes=[3], window_size=4)
    x = torch.randn(1, 16, 5, 7)
    q, k, v = m.convs[0](m.qkvs[0](x)).chunk(3, 1)
    local = torch.tanh(m.act_blocks[0](q * k) / 8**0.5) * v  # dim_head = 8
    assert torch.allclose(m(x), m.proj(local), atol=1e-6)


def test_clo_rejects_inconsistent_split():
    with pytest.raises(ValueError, match="group_split"):
        CloAttention(64, num_heads=8, group_split=[4, 2], kernel_sizes=[5], window_size=4)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        CloAttention(60, num_heads=8)


def layer_model(entry, channels=256, width=1.0):
    return {"nc": 1, "width_multiple": width, "backbone": [[-1, 1, "Conv", [channels, 1, 1]], entry],
            "head": [[[1], 1, "Detect", ["nc", 1]]]}


@pytest.mark.parametrize("args", [[], [256], [256, 8, 3]])
def test_same_channels_rule_accepts_omitted_or_matching_c2(args):
    model = build_model(layer_model([-1, 1, "CBAM", args]))
    assert model.model[1].channel_attention.f1.in_channels == 256


def test_same_channels_rule_scales_c2_and_rejects_mismatch():
    model = build_model(layer_model([-1, 1, "GAMAttention", [128]], channels=128, width=0.5))
    assert model.model[1].channel_attention[0].in_features == 64  # 128 * 0.5 on both layers
    with pytest.raises(ModelConfigError, match=r"layer 1 .*GAMAttention.*keeps its input channels"):
        build_model(layer_model([-1, 1, "GAMAttention", [512]]))


def test_double_attention_rule_output_channels():
    model = build_model(layer_model([-1, 1, "DoubleAttention", [128, 3]], width=0.5))
    block = model.model[1]
    assert (block.in_channels, block.c_m, block.c_n) == (128, 64, 3)  # c_m width-scaled, c_n as written
    assert model.head.m[0].in_channels == 64
    model = build_model(layer_model([-1, 1, "DoubleAttentionLayer", [64, 8, True]]))
    assert model.head.m[0].in_channels == 256  # reconstruct -> input channels
    assert lookup("DoubleAttention").cls is DoubleAttentionLayer


@pytest.mark.parametrize(("block", "args", "adapted"), [
    ("CBAM", [256, 8], [64, 8]),
    ("BAM", [], []),
    ("GAMAttention", [256, False], [64, False]),
    ("DoubleAttention", [128, 16, True], [128, 16, True]),  # reconstruct keeps channels whatever c_m is
    ("DoubleAttention", [128, 3], [64, 3]),
])
def test_args_for_channels_keep_the_channels(block, args, adapted):
    rule = lookup(block).rule
    assert rule.args_for_channels(args, 64) == adapted
    model = build_model(layer_model([-1, 1, block, adapted], channels=64))
    assert model.head.m[0].in_channels == 64


def test_seed_config_yolov5l_double_attention(shared):
    model = build_model(shared / "seed-configs" / "yolov5l-DoubleAttention.yaml")
    assert count_params(model) == 46_580_995
    assert model.stride.tolist() == [8, 16, 32]


def test_seed_config_yolov7_c3c2_gam(shared):
    model = build_model(shared / "seed-configs" / "yolov7-C3C2-GAMAttention.yaml")
    assert count_params(model) == 33_428_378
    assert model.stride.tolist() == [16, 32, 64]  # as the post's graph gives it
    assert [r.module for r in model.layer_records if r.index in (4, 52, 55)] == ["CNeB", "GAMAttention", "C3C2"]


def test_yoloair_blocks_param_counts():
    cneb, c3c2 = lookup("CNeB").cls(128, 128, 1), lookup("C3C2").cls(256, 128, 1)
    convnext = 49 * 64 + 64 + 2 * 64 + (64 * 256 + 256) + (256 * 64 + 64) + 64  # dw, LN, MLP, layer scale
    assert count_params(cneb) == 2 * (128 * 64 + 128) + (128 * 128 + 256) + convnext
    bottleneck = (64 * 64 + 2 * 64) + (64 * 64 * 9 + 2 * 64)
    assert count_params(c3c2) == 256 * 64 + 2 * 64 + (128 * 128 + 2 * 128) + bottleneck  # 1x1+BN, Mish cv1, m
    assert isinstance(c3c2.cv1.act, torch.nn.Mish)


SEED_BLOCKS = ["GAMAttention", "CBAM", "BAM", "DoubleAttention", "CloAttention"]


@pytest.fixture(scope="module")
def yolov5s_params() -> int:
    return count_params(build_model(CONFIGS / "models" / "yolov5s.yaml"))


@pytest.mark.parametrize("block", SEED_BLOCKS)
def test_yolov5s_attention_config(block, yolov5s_params):
    base = yolov5s_params
    model = build_model(CONFIGS / "attention" / f"yolov5s-{block}.yaml")
    inserted = model.model[10]
    assert lookup(block).cls is type(inserted)
    assert count_params(model) == base + count_params(inserted)
    assert model.stride.tolist() == [8, 16, 32]


@pytest.mark.parametrize("block", SEED_BLOCKS)
def test_yolov7_attention_config_is_the_insert_of_the_block(block):
    from yolo_attn.nn.yaml_edit import insert_block, layer_spans

    text = (CONFIGS / "attention" / f"yolov7-{block}.yaml").read_text()
    base = (CONFIGS / "models" / "yolov7.yaml").read_text()
    inserted = layer_spans(text)[51]
    args = text[inserted.args.start_mark.index:inserted.args.end_mark.index]
    assert inserted.module.value == block
    assert text.endswith(insert_block(base, 50, block, args))


@pytest.mark.slow
def test_yolov7_attention_configs_build():
    base = count_params(build_model(CONFIGS / "models" / "yolov7.yaml"))
    for block in SEED_BLOCKS:
        model = build_model(CONFIGS / "attention" / f"yolov7-{block}.yaml")
        assert count_params(model) == base + count_params(model.model[51]), block
