"""The attention-gate protocol: a block applies each spatial or channel gate through a :class:`Gate` submodule.

``Gate(kind, gate_layer)`` is the non-linearity that turns a block's attention logits into the gate it multiplies
features by (timm's ``gate_layer``: ``nn.Sigmoid``, ``nn.Hardsigmoid``, ...; ``nn.Identity`` where the block uses
its logits as they are), and marks that output for ``yolo-attn cam``, which reads it with a forward hook
(``yolo_attn.engine.cam.capture_gates``). The gate is applied in the layout of the features it multiplies, so that
it broadcasts against them: ``(b, c, 1, 1)`` channel weights, ``(b, 1, h, w)`` maps, or anything between. A gate
holds no parameters and adds no ``state_dict`` keys (with a parameter-free ``gate_layer``). This module defines no
registered block; the builder and the registry never look at it.
"""

from __future__ import annotations

import torch
from torch import nn

from yolo_attn.nn.attention._common import LayerFactory

GATE_KINDS = ("spatial", "channel")


class Gate(nn.Module):
    """``gate_layer`` applied to attention logits, marked as a ``kind`` gate ("spatial" or "channel": the view
    ``yolo-attn cam`` draws of it, a map averaged over channels or weights averaged over positions)."""

    def __init__(self, kind: str, gate_layer: LayerFactory = nn.Sigmoid):
        super().__init__()
        if kind not in GATE_KINDS:
            raise ValueError(f"gate kind must be one of {GATE_KINDS}, got {kind!r}")
        self.kind = kind
        self.layer = gate_layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"
