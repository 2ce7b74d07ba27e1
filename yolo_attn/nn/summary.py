"""Model summary: the layer table, parameter count, GFLOPs (:mod:`yolo_attn.nn.flops`) and strides."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from yolo_attn.nn.flops import count_gflops
from yolo_attn.nn.model import DetectionModel

__all__ = ["ModelSummary", "count_gflops", "count_params", "layer_table", "summarize"]


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
