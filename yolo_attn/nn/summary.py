"""Model summary: the layer table, parameter count, GFLOPs (torch.utils.flop_counter) and strides."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from yolo_attn.nn.model import DetectionModel


@dataclass(frozen=True)
class ModelSummary:
    layers: int
    params: int
    gflops: float
    strides: list[int]

    def as_dict(self) -> dict:
        return {"layers": self.layers, "params": self.params, "gflops": self.gflops, "strides": self.strides}


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _batch_norm_flops(input_shape, *args, out_shape=None, **kwargs) -> int:
    # thop (behind the YOLOv5/YOLOv7 summaries) counts an affine batch norm as 4 ops per element,
    # doubled like every other count; with it our totals match theirs.
    return 8 * math.prod(input_shape)


_CUSTOM_FLOPS = {
    torch.ops.aten.native_batch_norm: _batch_norm_flops,
    torch.ops.aten._native_batch_norm_legit_no_training: _batch_norm_flops,
}


def count_gflops(model: nn.Module, img_size: int | tuple[int, int] = 640, ch: int = 3) -> float:
    """GFLOPs (2 x multiply-adds) of one forward at ``img_size``, counted on the meta device.

    Counted in training mode, as YOLOv5/YOLOv7 profile a freshly built model, so auxiliary heads
    (IAuxDetect) count; a batch of two (then halved) keeps batch norm on pooled 1x1 maps valid.
    """
    h, w = (img_size, img_size) if isinstance(img_size, int) else img_size
    batch = 2
    try:
        probe, x = copy.deepcopy(model).train().to("meta"), torch.zeros(batch, ch, h, w, device="meta")
        with FlopCounterMode(display=False, custom_mapping=_CUSTOM_FLOPS) as counter:
            probe(x)
    except (NotImplementedError, RuntimeError):  # an op without a meta kernel: count on the CPU
        probe, x = copy.deepcopy(model).train(), torch.zeros(batch, ch, h, w)
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_CUSTOM_FLOPS) as counter:
            probe(x)
    return counter.get_total_flops() / batch / 1e9


def summarize(model: DetectionModel, img_size: int = 640) -> ModelSummary:
    """Totals as ``yolo-attn info`` prints them."""
    return ModelSummary(
        layers=len(list(model.modules())),
        params=count_params(model),
        gflops=round(count_gflops(model, img_size, int(model.yaml.get("ch", 3))), 2),
        strides=[int(s) for s in model.stride.tolist()],
    )


def layer_table(model: DetectionModel) -> str:
    """The per-layer table: index, from, n, params, module, args, output shape (at the stride probe size)."""
    rows = [f"{'':>3}{'from':>18}{'n':>3}{'params':>11}  {'module':<24}{'output':<22}arguments"]
    for r in model.layer_records:
        args = [repr(a) if isinstance(a, nn.Module) else a for a in r.args]
        shape = "x".join(str(s) for s in r.out_shape[1:]) if r.out_shape else "-"
        rows.append(f"{r.index:>3}{str(r.source):>18}{r.number:>3}{r.params:>11,}  {r.module:<24}{shape:<22}{args}")
    return "\n".join(rows)
