"""SimAM: a parameter-free attention module (Yang et al., ICML 2021)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from yolo_attn.nn.attention._common import LayerFactory
from yolo_attn.nn.attention._gates import Gate
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import Keywords, SameWidth

SIMAM_RULE = Keywords(
    SameWidth(signature="[c2=c1] (c2 is also used as lambda, as in YOLOAir)"), ("channels", "e_lambda")
)


@register(rule=SIMAM_RULE)
class SimAM(nn.Module):
    """SimAM (Yang, Zhang, Li, Xie, "SimAM: A Simple, Parameter-Free Attention Module for Convolutional
    Neural Networks", ICML 2021; official code ZjjConan/SimAM). No arXiv preprint; PMLR 139:11863.

    Per-neuron energy ``1/e* = (x - mu)^2 / (4 (sigma^2 + lambda)) + 0.5`` (sigma^2 over the other
    ``h*w - 1`` positions of the channel; a 1x1 map divides by 1 instead of 0), ``gate_layer`` gate
    ``sigmoid(1/e*)``; no parameters, and ``channels`` is unused (any width works).

    YOLOAir's builder calls its ``SimAM(channels, e_lambda=1e-4)`` as ``SimAM(c1, c2)``, so in its configs the
    width-scaled ``c2`` lands in the ``e_lambda`` slot: YOLOAir's ``[-1, 1, SimAM, [1024]]`` in yolov5s runs with
    lambda = 512, not the paper's 1e-4. The YAML rule here does the same (``c2`` must equal the input channels
    and becomes ``e_lambda``), so YOLOAir configs and checkpoints give YOLOAir's outputs; from Python,
    ``SimAM(c)`` keeps the paper's lambda. Example ``[-1, 1, SimAM, [1024]]``.
    """

    yaml_example: ClassVar[str] = "[-1, 1, SimAM, [256]]"

    def __init__(self, channels: int | None = None, gate_layer: LayerFactory = nn.Sigmoid, *, e_lambda: float = 1e-4):
        super().__init__()
        self.e_lambda = float(e_lambda)
        self.gate = Gate("spatial", gate_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[2] * x.shape[3] - 1
        d = (x - x.mean((2, 3), keepdim=True)).pow(2)
        energy_inv = d / (4 * (d.sum((2, 3), keepdim=True) / max(n, 1) + self.e_lambda)) + 0.5  # max: 1x1 maps
        return x * self.gate(energy_inv)
