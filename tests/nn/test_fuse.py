"""Fusion for inference (Conv+BN, RepConv, IDetect/IAuxDetect implicit layers) keeps the eval outputs."""

import copy

import pytest
import torch
from torch import nn

from yolo_attn import build_model
from yolo_attn.nn.blocks.conv import Conv
from yolo_attn.nn.blocks.implicit import ImplicitA, ImplicitM
from yolo_attn.nn.blocks.yolov7 import RepConv
from yolo_attn.nn.heads.anchor_based import IAuxDetect, IDetect

TINY_IDETECT = {
    "nc": 3,
    "anchors": [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119]],
    "backbone": [
        [-1, 1, "Conv", [8, 3, 2]],  # 0 /2
        [-1, 1, "RepConv", [8, 3, 1]],  # 1 with identity branch
        [-1, 1, "RepConv", [16, 3, 2]],  # 2 /4, no identity branch
        [-1, 1, "Conv", [16, 3, 2]],  # 3 /8
        [-1, 1, "RepConv", [16, 3, 1, None, 2]],  # 4 grouped, with identity branch
        [-1, 1, "Conv", [32, 3, 2]],  # 5 /16
    ],
    "head": [[[4, 5], 1, "IDetect", ["nc", "anchors"]]],
}

TINY_IAUXDETECT = {
    **TINY_IDETECT,
    "head": [
        [4, 1, "Conv", [8, 3, 1]],  # 6 auxiliary P3
        [5, 1, "Conv", [8, 3, 1]],  # 7 auxiliary P4
        [[4, 5, 6, 7], 1, "IAuxDetect", ["nc", "anchors"]],
    ],
}


def randomize_statistics(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics/affine and implicit values, so a wrong fold cannot pass unnoticed."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.rand(c, generator=g) * 2 - 1)
                m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.randn(c, generator=g) * 0.5)
            elif isinstance(m, ImplicitA):
                m.implicit.copy_(torch.randn(m.implicit.shape, generator=g) * 0.5)
            elif isinstance(m, ImplicitM):
                m.implicit.copy_(torch.rand(m.implicit.shape, generator=g) + 0.5)
    return model.eval()


def assert_relative_close(actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-4) -> None:
    error = (actual - expected).abs().max().item()
    scale = expected.abs().max().item()
    assert error <= rel * scale, f"max abs error {error:.3g} > {rel} x {scale:.3g}"


@torch.no_grad()
def test_conv_bn_fuse():
    conv = randomize_statistics(Conv(4, 6, 3, 2))
    x = torch.randn(2, 4, 9, 11)
    before = conv(x)
    conv.fuse()
    assert isinstance(conv.bn, nn.Identity) and conv.conv.bias is not None
    assert_relative_close(conv(x), before)


@pytest.mark.parametrize(
    "c1, c2, s, g, has_identity",
    [(8, 8, 1, 1, True), (8, 16, 1, 1, False), (8, 8, 2, 1, False), (8, 8, 1, 4, True)],
)
@torch.no_grad()
def test_repconv_fuse(c1, c2, s, g, has_identity):
    block = randomize_statistics(RepConv(c1, c2, 3, s, None, g))
    assert (block.rbr_identity is not None) == has_identity
    x = torch.randn(2, c1, 10, 14)
    before = block(x)
    block.fuse()
    assert block.rbr_dense is None and block.rbr_1x1 is None and block.rbr_identity is None
    assert sorted(block.state_dict()) == ["rbr_reparam.bias", "rbr_reparam.weight"]
    assert_relative_close(block(x), before)
    block.fuse()  # a second fuse is a no-op
    assert_relative_close(block(x), before)


@torch.no_grad()
def test_repconv_deploy_form_loads_fused_weights():
    trained = randomize_statistics(RepConv(8, 8))
    x = torch.randn(1, 8, 6, 6)
    before = trained(x)
    trained.fuse()
    deployed = RepConv(8, 8, deploy=True).eval()
    deployed.load_state_dict(trained.state_dict())
    assert_relative_close(deployed(x), before)


@pytest.mark.parametrize("cfg, head_type", [(TINY_IDETECT, IDetect), (TINY_IAUXDETECT, IAuxDetect)])
@torch.no_grad()
def test_model_fuse_keeps_outputs(cfg, head_type):
    model = randomize_statistics(build_model(cfg))
    assert type(model.head) is head_type
    x = torch.rand(2, 3, 64, 96)
    before, _ = model(x)
    fused = copy.deepcopy(model).fuse()
    after, _ = fused(x)
    assert after.shape == before.shape == (2, 3 * (8 * 12 + 4 * 6), 8)
    assert_relative_close(after, before)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert all(torch.all(ia.implicit == 0) for ia in fused.head.ia)
    assert all(torch.all(im.implicit == 1) for im in fused.head.im)
    # Fusing removes exactly the BN parameters that became conv biases and the RepConv side branches.
    assert sum(p.numel() for p in fused.parameters()) < sum(p.numel() for p in model.parameters())


@torch.no_grad()
def test_idetect_fuse_folds_implicit_into_conv():
    head = randomize_statistics(IDetect(nc=2, anchors=[[10, 13, 16, 30]], ch=[4]))
    x = torch.randn(1, 4, 5, 7)
    before = head.predict(0, x)
    weight_before = head.m[0].weight.clone()
    head.fuse()
    assert not torch.allclose(head.m[0].weight, weight_before)
    assert_relative_close(head.m[0](x), before)  # the bare conv now gives the implicit-wrapped output
