"""Our FLOP rules, pinned by hand-computed integers: any change of count (a torch release, a rule) fails here."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from yolo_attn.nn.flops import count_gflops, count_macs


class _Attention(nn.Module):
    """A block whose products are functional: q^T k and v attn, as YOLO attention blocks write them."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = k = v = x.view(b, c, h * w)
        attn = (q.transpose(-2, -1) @ k).softmax(dim=-1)  # (hw x c) @ (c x hw); functional softmax is free
        return torch.bmm(v, attn).view(b, c, h, w)


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.SiLU()
        self.pool = nn.MaxPool2d(2)
        self.attn = _Attention()
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.bilinear = nn.Upsample(scale_factor=2, mode="bilinear")
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pool(self.act(self.bn(self.conv(x))))  # 8 x 8 x 8
        y = self.up(self.attn(y))  # 8 x 16 x 16
        z = self.bilinear(y[:, :, :8, :8])  # 8 x 16 x 16
        return self.softmax(self.fc(self.gap(y + z).flatten(1)))


TINY_MACS = {
    "conv": 16 * 16 * 8 * 3 * 9,  # output elements x c_in x k (bias not counted)
    "bn": 4 * 8 * 16 * 16,  # 2 per element, doubled when affine
    "attn": 64 * 64 * 8 + 8 * 64 * 64,  # (64 x 8) @ (8 x 64), then (8 x 64) @ (64 x 64)
    "bilinear": 11 * 8 * 16 * 16,
    "gap": 8 * 16 * 16 + 8,  # one add per pooled input, one divide per output
    "fc": 8 * 4,
    "softmax": 4 + 3 + 4,  # exp, sum, divide over 4 classes
}


def test_hand_computed_counts_are_exact():
    assert count_macs(_Tiny().eval(), torch.zeros(1, 3, 16, 16)) == sum(TINY_MACS.values())


def test_meta_device_and_batch_give_the_same_per_image_count():
    expected = 2 * sum(TINY_MACS.values()) / 1e9
    assert count_gflops(_Tiny(), 16) == pytest.approx(expected, rel=1e-12)


def test_functional_convolution_counts_as_the_module_would():
    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(8, 2, 3, 3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.conv2d(x, self.weight, None, 1, 1, 1, 2)

    module = nn.Conv2d(4, 8, 3, padding=1, groups=2, bias=False)
    x = torch.zeros(1, 4, 10, 10)
    assert count_macs(Functional(), x) == count_macs(module, x) == 10 * 10 * 8 * 2 * 9


def test_products_inside_a_counted_module_are_not_counted_twice():
    assert count_macs(nn.Linear(16, 5), torch.zeros(3, 16)) == 3 * 5 * 16  # its F.linear is not added again


def test_transposed_convolution_walks_the_input():
    m = nn.ConvTranspose2d(4, 6, 2, stride=2)
    assert count_macs(m, torch.zeros(1, 4, 5, 5)) == 4 * 5 * 5 * 6 * 2 * 2
