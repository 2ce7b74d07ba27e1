"""SimAM: a parameter-free attention module (Yang et al., ICML 2021)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from yolo_attn.nn.attention._common import check_same_width
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import CONV


@register(rule=CONV)
class SimAM(nn.Module):
    """SimAM (Yang, Zhang, Li, Xie, "SimAM: A Simple, Parameter-Free Attention Module for Convolutional
    Neural Networks", ICML 2021; official code ZjjConan/SimAM). No arXiv preprint; PMLR 139:11863.

    Per-neuron energy ``1/e* = (x - mu)^2 / (4 (sigma^2 + lambda)) + 0.5`` (sigma^2 over the other
    ``h*w - 1`` positions of the channel), gate ``sigmoid(1/e*)``; no parameters.

    YAML ``[c2, e_lambda=1e-4]`` -> ``SimAM(c1, c2, e_lambda)`` (YOLOAir registers it like Conv; ``c2``
    must equal ``c1``). YOLOAir's own class takes ``(channels, e_lambda)``, so its builder passes ``c2``
    as lambda; here lambda stays the paper's 1e-4. Example ``[-1, 1, SimAM, [1024]]``.
    """

    yaml_example: ClassVar[str] = "[-1, 1, SimAM, [256]]"

    def __init__(self, c1: int, c2: int | None = None, e_lambda: float = 1e-4):
        super().__init__()
        check_same_width(c1, c2)
        self.e_lambda = e_lambda

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[2] * x.shape[3] - 1
        d = (x - x.mean((2, 3), keepdim=True)).pow(2)
        energy_inv = d / (4 * (d.sum((2, 3), keepdim=True) / max(n, 1) + self.e_lambda)) + 0.5  # max: 1x1 maps
        return x * energy_inv.sigmoid()
