"""Every attention block (yolo_attn.nn.attention) built from its ``yaml_example`` through the builder:
shape, gradients, batch 1, eval mode, a non-square odd size, constant input, a pinned parameter count,
docs, the constructor contract and the gates ``yolo-attn cam`` reads, and ONNX export with dynamic
batch/height/width matching torch."""

import importlib
import inspect
import pkgutil
import re

import numpy as np
import pytest
import torch
import yaml
from torch import nn

import yolo_attn.nn
from yolo_attn.engine.cam import capture_gates
from yolo_attn.engine.exporter import export_onnx
from yolo_attn.nn.attention._common import hidden_channels
from yolo_attn.nn.attention._gates import Gate
from yolo_attn.nn.builder import ModelConfigError, build_model, parse_layers
from yolo_attn.nn.catalog import is_attention
from yolo_attn.nn.registry import all_blocks, lookup
from yolo_attn.nn.rules import Keywords, LayerContext

CHANNELS = 256
HEIGHT, WIDTH = 13, 17  # non-square, odd

ATTENTION = [s for s in all_blocks() if is_attention(s)]  # the catalogue's definition: every block it calls attention
IDS = [s.name for s in ATTENTION]

# Parameters of each block's yaml_example after a 256-channel layer; a change here must be deliberate.
PARAMS = {
    "ACmix": 218_414,
    "AxialAttention": 9_966_592,
    "BAM": 17_329,
    "CA": 6_680,
    "CBAM": 8_290,
    "CloAttention": 306_176,
    "CoTAttention": 417_248,
    "CrissCrossAttention": 82_241,
    "DANet": 390_994,
    "DoubleAttentionLayer": 98_816,
    "ECA": 3,
    "EffectiveSE": 65_792,
    "EMA": 10_368,
    "GAMAttention": 435_456,
    "GatherExcite": 11_280,
    "GlobalContext": 33_473,
    "LSKBlock": 118_470,
    "MHSA": 200_832,
    "NAMAttention": 512,
    "ParNetAttention": 722_688,
    "PolarizedSelfAttention": 131_840,
    "S2Attention": 525_312,
    "SE": 8_192,
    "SequentialPolarized": 131_840,
    "ShuffleAttention": 96,
    "SimAM": 0,
    "SKAttention": 2_254_880,  # + 256 per branch: biased branch convs, as YOLOAir's
    "SOCA": 16_672,
    "SpatialGroupEnhance": 16,
    "TripletAttention": 300,
}

# BatchNorm over a pooled 1x1 descriptor (as the official code has it) cannot train on one image.
TRAIN_NEEDS_BATCH_2 = {"CoTAttention"}


def example_entry(spec) -> list:
    return yaml.safe_load(spec.cls.yaml_example)


def build(spec) -> torch.nn.Module:
    """The block as the builder makes it from ``[Conv 256] + yaml_example``."""
    d = {"nc": 1, "backbone": [[-1, 1, "Conv", [CHANNELS, 1, 1]], example_entry(spec)], "head": []}
    torch.manual_seed(0)
    layers, _, _ = parse_layers(d, ch=3)
    return layers[1]


def example_context() -> LayerContext:
    return LayerContext(
        index=1, c_in=(CHANNELS,), number=1, width_multiple=1.0, channel_multiple=8, nc=1, num_outputs=18
    )


def declared_out_channels(spec) -> int:
    return spec.rule.resolve(example_entry(spec)[3], example_context()).c_out


def test_zoo_is_complete():
    required = {
        "SE", "ECA", "CA", "SimAM", "SKAttention", "TripletAttention", "ShuffleAttention", "NAMAttention",
        "GlobalContext", "PolarizedSelfAttention", "S2Attention", "SpatialGroupEnhance", "CrissCrossAttention",
        "ParNetAttention", "SOCA", "EffectiveSE", "EMA", "LSKBlock", "DANet", "ACmix", "AxialAttention",
        "CoTAttention", "MHSA", "GatherExcite", "SequentialPolarized",
    }
    assert required <= set(IDS)
    aliases = {
        "SEAttention": "SE", "CoordAtt": "CA", "GlobalContextBlock": "GlobalContext", "GC": "GlobalContext",
        "PSA_p": "PolarizedSelfAttention", "PSA_s": "SequentialPolarized", "EffectiveSELayer": "EffectiveSE",
        "ESE": "EffectiveSE", "AxialImageTransformer": "AxialAttention", "LSKblock": "LSKBlock",
    }
    for alias, name in aliases.items():
        assert lookup(alias).name == name


@pytest.mark.parametrize("spec", ATTENTION, ids=IDS)
def test_documented_with_paper_and_example(spec):
    doc = spec.cls.__doc__ or ""
    assert re.search(r"\b(19|20)\d\d\b", doc), "docstring must name the paper with its year"
    assert re.search(r"arXiv[: ]\d{4}\.\d{4,5}|No arXiv preprint", doc), "docstring must give the arXiv id"
    assert "YAML" in doc and re.search(r"e\.g\.|example", doc, re.I), "docstring needs the YAML signature + example"
    entry = example_entry(spec)
    assert isinstance(entry, list) and len(entry) == 4 and lookup(entry[2]).cls is spec.cls


@pytest.mark.parametrize("spec", ATTENTION, ids=IDS)
def test_parameter_count_is_pinned(spec):
    assert spec.name in PARAMS, f"pin the parameter count of {spec.name} in PARAMS"
    assert sum(p.numel() for p in build(spec).parameters()) == PARAMS[spec.name]


@pytest.mark.parametrize("spec", ATTENTION, ids=IDS)
def test_train_forward_and_gradients(spec):
    block = build(spec).train()
    with torch.no_grad():  # move zero/one initialisations (gammas, last convs) off their special values
        for p in block.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = torch.randn(2, CHANNELS, HEIGHT, WIDTH, requires_grad=True)
    out = block(x)
    assert out.shape == (2, declared_out_channels(spec), HEIGHT, WIDTH)
    assert torch.isfinite(out).all()
    (out * torch.randn_like(out)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    unreached = [n for n, p in block.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not unreached, f"no gradient reaches {unreached}"


@pytest.mark.parametrize("spec", ATTENTION, ids=IDS)
def test_batch_one_and_eval(spec):
    block = build(spec)
    one = torch.randn(1, CHANNELS, HEIGHT, WIDTH)
    if spec.name in TRAIN_NEEDS_BATCH_2:
        with pytest.raises(ValueError, match="more than 1 value"):
            block.train()(one)
    else:
        assert block.train()(one).shape == (1, CHANNELS, HEIGHT, WIDTH)
    block.eval()
    x = torch.randn(2, CHANNELS, HEIGHT, WIDTH)
    with torch.no_grad():
        out, again, single = block(x), block(x), block(x[:1])
    assert out.shape == (2, CHANNELS, HEIGHT, WIDTH)
    assert torch.isfinite(out).all()
    assert torch.equal(out, again)
    torch.testing.assert_close(single, out[:1], rtol=1e-4, atol=1e-5)  # eval mode: images are independent


@pytest.mark.parametrize("spec", ATTENTION, ids=IDS)
def test_constant_input_gives_finite_output(spec):
    """A constant map (zero variance; the builder's stride probe is all zeros) must not produce NaN."""
    block = build(spec).eval()
    with torch.no_grad():
        assert torch.isfinite(block(torch.full((2, CHANNELS, HEIGHT, WIDTH), 0.5))).all()


ONNX_CHANNELS = 64
ONNX_STRIDE = 8  # a 1x1 Conv with stride 8 in front keeps the builder's stride probe small (32x32 at the block)
ONNX_EXPORT_SHAPE = (72, 88)  # the block sees 9x11 at export ...
ONNX_CHECK_SHAPES = [(2, 3, 80, 64), (1, 3, 64, 80)]  # ... and 10x8, 8x10 (other batch, both sides) in onnxruntime


def onnx_model(spec):
    """Conv (stride 8) -> the block (example args fitted to 64 channels) -> Detect, as the builder makes it."""
    entry = example_entry(spec)
    entry[3] = spec.rule.args_for_channels(entry[3], ONNX_CHANNELS)
    d = {
        "nc": 1, "anchors": [[10, 13, 16, 30, 33, 23]],
        "backbone": [[-1, 1, "Conv", [ONNX_CHANNELS, 1, ONNX_STRIDE]], entry],
        "head": [[[1], 1, "Detect", ["nc", "anchors"]]],
    }
    torch.manual_seed(0)
    model = build_model(d)
    with torch.no_grad():  # move zero/one initialisations (gammas, rates) off their special values
        for p in model.model[1].parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


@pytest.mark.slow
@pytest.mark.parametrize("spec", ATTENTION, ids=IDS)
def test_onnx_export_with_dynamic_shapes_matches_torch(spec, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model = onnx_model(spec)
    path = export_onnx(model, tmp_path / "block.onnx", shape=ONNX_EXPORT_SHAPE, dynamic=True, opset=17)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in ONNX_CHECK_SHAPES:
        x = torch.rand(shape)
        with torch.no_grad():
            expected = model(x).numpy()  # fused and in export mode now: the decoded tensor
        assert np.isfinite(expected).all(), f"{spec.name}: torch output not finite at {shape}"
        (got,) = session.run(None, {"images": x.numpy()})
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4, err_msg=f"{spec.name} at {shape}")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("[-1, 1, SE, [128, 16]]", "keeps its input channels"),
        ("[-1, 1, CA, [512]]", "keeps its input channels"),
        ("[-1, 1, ShuffleAttention, [256, 24]]", "divisible by 2 \\* groups"),
        ("[-1, 1, EMA, [24]]", "divisible by factor"),
        ("[-1, 1, MHSA, [256, 14, 14, 3]]", "divisible by heads"),
        ("[-1, 1, GatherExcite, [0, True]]", "fixed input size"),
        ("[-1, 1, AxialAttention, [256, 1, True]]", "reversible"),
        ("[-1, 1, SE, [256, 16, 3]]", "too many args for its YAML signature"),
        ("[-1, 1, CBAM, [256, 0]]", "reduction must be a positive number"),
    ],
)
def test_bad_arguments_fail_at_build_naming_the_layer(line, message):
    d = {"nc": 1, "backbone": [[-1, 1, "Conv", [CHANNELS, 1, 1]], yaml.safe_load(line)], "head": []}
    with pytest.raises(ModelConfigError, match=rf"layer 1 .*{message}"):
        parse_layers(d, ch=3)


def test_width_then_args_scales_the_declared_width():
    """YOLOAir's ``[-1, 1, SEAttention, [1024]]`` in a width-0.5 model sits on 512 channels and builds."""
    d = {"nc": 1, "width_multiple": 0.5, "backbone": [[-1, 1, "Conv", [1024, 1, 1]], [-1, 1, "SEAttention", [1024]]],
         "head": []}
    layers, _, records = parse_layers(d, ch=3)
    assert records[1].args == [512]
    assert layers[1](torch.randn(2, 512, 5, 7)).shape == (2, 512, 5, 7)


# Attention lines as YOLOAir's configs/attention/*.yaml write them after the last C3 of yolov5s (width 0.5).
YOLOAIR_LINES = [
    "[-1, 1, SEAttention, [1024]]", "[-1, 1, SKAttention, [1024]]", "[-1, 1, S2Attention, [1024]]",
    "[-1, 1, SOCA, [1024]]", "[-1, 1, ShuffleAttention, [1024]]", "[-1, 1, CrissCrossAttention, [1024]]",
    "[-1, 1, ACmix, [1024]]", "[-1, 1, CA, [1024]]", "[-1, 1, NAMAttention, [1024]]", "[-1, 1, SimAM, [1024]]",
    "[-1, 1, EffectiveSELayer, [1024]]", "[-1, 1, SpatialGroupEnhance, [8]]", "[-1, 1, PSA_s, [512, 512, false]]",
]


@pytest.mark.parametrize("line", YOLOAIR_LINES)
def test_yoloair_config_lines_build_unmodified(line):
    d = {"nc": 80, "width_multiple": 0.5, "backbone": [[-1, 1, "Conv", [1024, 1, 1]], yaml.safe_load(line)], "head": []}
    layers, _, _ = parse_layers(d, ch=3)
    with torch.no_grad():
        assert layers[1].eval()(torch.randn(2, 512, 6, 10)).shape == (2, 512, 6, 10)


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (40, 24)])
def test_any_spatial_size_for_fixed_table_blocks(size):
    """BoTNet's relative tables (built for 14x14) are sliced or interpolated to the actual map."""
    block = build(lookup("MHSA")).eval()
    with torch.no_grad():
        assert block(torch.randn(1, CHANNELS, *size)).shape == (1, CHANNELS, *size)


def test_criss_cross_equals_row_and_column_masked_attention():
    from yolo_attn.nn.attention.criss_cross import CrissCrossAttention

    torch.manual_seed(0)
    block = CrissCrossAttention(16)
    with torch.no_grad():
        block.gamma.fill_(0.7)
        x = torch.randn(2, 16, 4, 5)
        q, k, v = (conv(x).flatten(2) for conv in (block.query_conv, block.key_conv, block.value_conv))
        rows, cols = torch.meshgrid(torch.arange(4), torch.arange(5), indexing="ij")
        rows, cols = rows.flatten(), cols.flatten()
        same_line = (rows[:, None] == rows[None, :]) | (cols[:, None] == cols[None, :])  # self included once
        logits = (q.transpose(1, 2) @ k).masked_fill(~same_line, float("-inf"))
        expected = 0.7 * (v @ logits.softmax(-1).transpose(1, 2)).view_as(x) + x
        torch.testing.assert_close(block(x), expected)


def test_cot_local_aggregation_shares_kernels_every_c_w_channels():
    from yolo_attn.nn.attention.cot import local_aggregate

    torch.manual_seed(0)
    v, weights = torch.randn(2, 8, 4, 5), torch.randn(2, 2, 9, 4, 5)
    padded = torch.nn.functional.pad(v, (1, 1, 1, 1))
    expected = torch.zeros_like(v)
    for c in range(8):
        for tap in range(9):
            dy, dx = divmod(tap, 3)
            expected[:, c] += weights[:, c % 2, tap] * padded[:, c, dy : dy + 4, dx : dx + 5]
    torch.testing.assert_close(local_aggregate(v, weights, 3), expected)


def test_botnet_relative_logits_use_key_minus_query_offsets():
    from yolo_attn.nn.attention.botnet_mhsa import MHSA

    torch.manual_seed(0)
    block = MHSA(8, width=5, height=4, heads=2, pos_emb=True)
    x = torch.randn(1, 8, 3, 4)  # smaller than the 4x5 tables: central slices
    with torch.no_grad():
        q = block.query(x).view(2, 4, 12) * 4**-0.5
        k, v = block.key(x).view(2, 4, 12), block.value(x).view(2, 4, 12)
        logits = torch.einsum("ndq,ndk->nqk", q, k)
        for query in range(12):
            for key in range(12):
                (qy, qx), (ky, kx) = divmod(query, 4), divmod(key, 4)
                rel = block.rel_width[kx - qx + 4] + block.rel_height[ky - qy + 3]
                logits[:, query, key] += q[:, :, query] @ rel
        expected = torch.einsum("nqk,ndk->ndq", logits.softmax(-1), v).reshape(1, 8, 3, 4)
        torch.testing.assert_close(block(x), expected)


def test_soca_matrix_square_root():
    from yolo_attn.nn.attention.soca import covariance_pool, newton_schulz_sqrtm

    torch.manual_seed(0)
    x = torch.randn(2, 6, 9, 11, dtype=torch.float64)
    cov = covariance_pool(x)
    flat = x.flatten(2)
    torch.testing.assert_close(cov, torch.stack([torch.cov(f, correction=0) for f in flat]))
    a = torch.eye(6, dtype=torch.float64) + 0.1 * (cov / cov.diagonal(dim1=1, dim2=2).sum(-1)[:, None, None])
    converged = newton_schulz_sqrtm(a, iterations=20)
    torch.testing.assert_close(converged @ converged, a, rtol=0, atol=1e-10)
    five_steps = newton_schulz_sqrtm(a, iterations=5)  # SOCA's setting: an approximation, as in iSQRT-COV
    torch.testing.assert_close(five_steps @ five_steps, a, rtol=0, atol=1e-3)


# The constructor contract (timm's ``layers/``): these names, in this order, positional; everything else keyword-only.
CONTRACT = ("channels", "rd_ratio", "rd_channels", "rd_divisor", "kernel_size", "act_layer", "gate_layer")
REDUCTION = ("rd_ratio", "rd_channels", "rd_divisor")
OLD_NAMES = {"c1", "c2", "dim", "in_channels", "reduction", "ratio", "rate", "k_size"}

# Gates ``yolo-attn cam`` reads from each block's example, in forward order (no entry: the block has no gate);
# GlobalContext's gate exists only with the 'channel_mul' fusion.
GATES = {
    "BAM": ["spatial"], "CA": ["spatial", "spatial"], "CBAM": ["channel", "spatial"], "CloAttention": ["spatial"],
    "ECA": ["channel"], "EffectiveSE": ["channel"], "EMA": ["spatial"] * 3, "GAMAttention": ["channel", "spatial"],
    "GatherExcite": ["channel"], "GlobalContext": ["channel"], "LSKBlock": ["spatial"], "NAMAttention": ["channel"],
    "ParNetAttention": ["channel"], "PolarizedSelfAttention": ["channel", "spatial"],
    "SequentialPolarized": ["channel", "spatial"], "SE": ["channel"], "ShuffleAttention": ["channel", "spatial"],
    "SimAM": ["spatial"], "SOCA": ["channel"], "SpatialGroupEnhance": ["spatial"], "TripletAttention": ["spatial"] * 3,
}
GATE_EXAMPLES = {"GlobalContext": "[-1, 1, GlobalContext, [256, 0.25, att, [channel_add, channel_mul]]]"}


def gated_build(spec) -> torch.nn.Module:
    """The block from its example, or from the example that has its gates."""
    line = yaml.safe_load(GATE_EXAMPLES.get(spec.name, spec.cls.yaml_example))
    torch.manual_seed(0)
    layers, _, _ = parse_layers({"nc": 1, "backbone": [[-1, 1, "Conv", [CHANNELS, 1, 1]], line], "head": []}, ch=3)
    return layers[1]


def parameters(spec) -> list[inspect.Parameter]:
    return list(inspect.signature(spec.cls.__init__).parameters.values())[1:]


@pytest.mark.parametrize("spec", ATTENTION, ids=IDS)
def test_constructor_contract(spec):
    params = parameters(spec)
    names = [p.name for p in params]
    assert names[0] == "channels"
    positional = [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert positional == [n for n in CONTRACT if n in positional], "contract arguments, in the contract's order"
    paper = [p for p in params if p.name not in CONTRACT]
    assert all(p.kind is p.KEYWORD_ONLY for p in paper), "paper-specific arguments are keyword-only"
    assert {n for n in REDUCTION if n in names} in (set(), set(REDUCTION)), "rd_ratio, rd_channels, rd_divisor together"
    assert not OLD_NAMES & set(names)
    assert isinstance(spec.rule, Keywords) and spec.rule.names[0] == "channels", "the YAML order lives in the rule"


# Blocks that narrow the input channels at widths their paper fixes, with no reduction ratio to choose (no rd_*).
FIXED_WIDTHS = {
    "CloAttention": "the global branch's width is its share of the heads (num_heads, group_split)",
    "DoubleAttentionLayer": "c_m and c_n, the paper's own widths, are keyword arguments",
    "LSKBlock": "two half-width branches",
    "PolarizedSelfAttention": "half-width channel and spatial branches",
    "SequentialPolarized": "half-width channel and spatial branches",
}


def narrowing_widths(block: nn.Module, channels: int) -> list[int]:
    """Output widths of the convolutions and linear layers that take all ``channels`` to fewer (more than one)."""
    widths = []
    for m in block.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            c_in, c_out = m.in_channels, m.out_channels
        elif isinstance(m, nn.Linear):
            c_in, c_out = m.in_features, m.out_features
        else:
            continue
        if c_in == channels and 1 < c_out < channels:
            widths.append(c_out)
    return widths


@pytest.mark.parametrize("spec", ATTENTION, ids=IDS)
def test_reduction_arguments_where_the_block_reduces(spec):
    """A block that narrows its input by a ratio takes rd_ratio/rd_channels/rd_divisor, and they set the width."""
    narrowing = narrowing_widths(build(spec), CHANNELS)
    if "rd_ratio" not in {p.name for p in parameters(spec)}:
        assert (spec.name in FIXED_WIDTHS) == bool(narrowing), f"narrows to {narrowing} without rd_* arguments"
        return
    assert narrowing, "takes rd_* arguments but reduces nothing"
    resolved = spec.rule.resolve(example_entry(spec)[3], example_context())

    def widths(**reduction) -> list[int]:
        return narrowing_widths(spec.cls(*resolved.args, **{**resolved.kwargs, **reduction}), CHANNELS)

    assert set(widths(rd_channels=40)) == {40}
    assert all(w % 24 == 0 for w in widths(rd_divisor=24))


def _activations_outside_gates(block: nn.Module) -> list[nn.Module]:
    in_gates = {id(m) for gate in block.modules() if isinstance(gate, Gate) for m in gate.modules()}
    return [m for m in block.modules() if type(m).__module__ == "torch.nn.modules.activation" and id(m) not in in_gates]


@pytest.mark.parametrize("spec", ATTENTION, ids=IDS)
def test_act_and_gate_layers_where_the_block_has_them(spec):
    block = gated_build(spec)
    names = {p.name for p in parameters(spec)}
    gate_layers = [m.layer for m in block.modules() if isinstance(m, Gate) and not isinstance(m.layer, nn.Identity)]
    assert ("act_layer" in names) == bool(_activations_outside_gates(block))
    assert ("gate_layer" in names) == bool(gate_layers)
    resolved = spec.rule.resolve(yaml.safe_load(GATE_EXAMPLES.get(spec.name, spec.cls.yaml_example))[3],
                                 example_context())
    swapped = {"act_layer": nn.Mish, "gate_layer": nn.Softsign}
    other = spec.cls(*resolved.args, **resolved.kwargs, **{k: v for k, v in swapped.items() if k in names})
    if "act_layer" in names:
        assert any(isinstance(m, nn.Mish) for m in _activations_outside_gates(other))
    kept = [m.layer for m in other.modules() if isinstance(m, Gate) and not isinstance(m.layer, nn.Identity)]
    assert all(isinstance(layer, nn.Softsign) for layer in kept) and len(kept) == len(gate_layers)
    assert sum(p.numel() for p in other.parameters()) == sum(p.numel() for p in block.parameters())


@pytest.mark.parametrize("spec", ATTENTION, ids=IDS)
def test_cam_finds_the_gates(spec):
    block = gated_build(spec).eval()
    x = torch.randn(2, CHANNELS, HEIGHT, WIDTH)
    with torch.no_grad(), capture_gates(block) as gates:
        out = block(x)
    assert [g.kind for g in gates] == GATES.get(spec.name, [])
    assert all(g.block == spec.cls.__name__ for g in gates)
    for g in gates:  # a (b, c', h', w') gate over the block's positions: full size or 1 along each spatial axis
        b, _, h, w = g.gate.shape
        assert b == 2 and h in (1, HEIGHT) and w in (1, WIDTH)
    with torch.no_grad():
        assert torch.equal(block(x), out)  # the gates are the computation itself, not a second pass


def test_gates_add_no_parameters_or_keys():
    for spec in ATTENTION:
        for gate in (m for m in gated_build(spec).modules() if isinstance(m, Gate)):
            assert not gate.state_dict() and not list(gate.parameters()), spec.name


@pytest.mark.parametrize(("channels", "rd_ratio", "rd_channels", "rd_divisor", "min_channels", "hidden"), [
    (256, 1 / 16, None, 1, 1, 16),  # SE, CBAM: channels // 16
    (24, 1 / 16, None, 1, 1, 1),  # rounded down, as the papers' //
    (8, 1 / 16, None, 1, 1, 1),  # never below min_channels
    (49, 1 / 49, None, 1, 1, 1),  # 49 * (1 / 49) < 1 in floating point
    (64, 1 / 32, None, 1, 8, 8),  # CA: at least 8
    (256, 1 / 16, None, 1, 32, 32),  # SK: at least L
    (100, 1 / 4, None, 8, 1, 32),  # rd_divisor: up to a multiple (YOLOv5's make_divisible)
    (256, 1 / 16, 40, 8, 1, 40),  # rd_channels wins
])
def test_hidden_channels(channels, rd_ratio, rd_channels, rd_divisor, min_channels, hidden):
    assert hidden_channels(channels, rd_ratio, rd_channels, rd_divisor, min_channels) == hidden


def test_no_registered_name_is_the_name_of_another_class():
    """A YAML name or alias that is also the name of a different class (YOLOAir's ``SELayer`` was, beside SE's
    alias) reads as that class but builds another."""
    classes: dict[str, set[type]] = {}
    for info in pkgutil.walk_packages(yolo_attn.nn.__path__, "yolo_attn.nn."):
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, nn.Module) and obj.__module__ == module.__name__:
                classes.setdefault(name, set()).add(obj)
    clashes = {key: spec.name for spec in all_blocks() for key in (spec.name, *spec.aliases)
               if classes.get(key, {spec.cls}) - {spec.cls}}
    assert not clashes
