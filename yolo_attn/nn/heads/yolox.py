"""YOLOX's decoupled, anchor-free head as YOLOAir writes it (``DetectX``; Ge et al., "YOLOX: Exceeding YOLO
Series in 2021", arXiv:2107.08430; iscyy/yoloair ``models/yolox.py``).

In YOLOAir's YAMLs the head's stems and its two 3x3 conv towers are ordinary ``Conv`` layers; ``DetectX`` reads
them in pairs ``[cls0, reg0, cls1, reg1, ...]`` and holds only the three 1x1 prediction convs per level:
``cls_preds`` (class logits) on the class tower, ``reg_preds`` (box) and ``obj_preds`` (objectness) on the
regression tower. Every cell is one prediction point: the box centre is ``(offset + cell) * stride`` and its
size ``exp(log size) * stride``. It trains only with YOLOX's loss (:mod:`yolo_attn.losses.yolox`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from yolo_attn.nn.heads.contract import HeadContract
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import DetectionHead

PRIOR_PROB = 1e-2  # YOLOX's initial class and objectness probability (RetinaNet's prior)


def cell_grid(shapes: list[tuple[int, int]], strides: list[float], like: torch.Tensor):
    """Top-left cell corners ``(n, 2)`` as (x, y) in grid units and each cell's stride ``(n, 1)``, for levels of
    ``shapes`` (h, w) in order, rows first (the order of the flattened head outputs)."""
    cells, stride_rows = [], []
    for (h, w), s in zip(shapes, strides):
        grid_y, grid_x = torch.meshgrid(torch.arange(h, device=like.device, dtype=like.dtype),
                                        torch.arange(w, device=like.device, dtype=like.dtype), indexing="ij")
        cells.append(torch.stack((grid_x, grid_y), -1).view(-1, 2))
        stride_rows.append(torch.full((h * w, 1), float(s), device=like.device, dtype=like.dtype))
    return torch.cat(cells), torch.cat(stride_rows)


def flatten_levels(raw: list[torch.Tensor]) -> torch.Tensor:
    """Per-level maps ``(b, c, h, w)`` -> ``(b, n, c)`` rows, levels in order, each level rows first."""
    return torch.cat([p.flatten(2) for p in raw], 2).transpose(1, 2)


@register(rule=DetectionHead(inputs_per_level=2, signature="[nc, anchors=1] from [cls0, reg0, cls1, reg1, ...]"))
class DetectX(nn.Module):
    """YOLOX's prediction convs over YOLOAir's class/regression towers. YAML: ``[nc, anchors]`` with
    ``anchors: 1`` and inputs ``[cls0, reg0, cls1, reg1, cls2, reg2]``.

    Training returns per-level maps ``(b, 5 + nc, ny, nx)`` = (box offsets x, y, log w, log h, objectness logit,
    class logits); eval returns ``(decoded (b, n, 5 + nc) rows (cx, cy, w, h, obj, classes...) in input pixels,
    raw maps)``; with ``export`` the decoded tensor alone.
    """

    contract = HeadContract(default_loss="yolox", losses=("yolox",), eval_loss="yolox", anchor_based=False,
                            objectness=True, upstream="yoloair")
    export = False  # set by the exporter: eval forward then returns only the decoded tensor

    def __init__(self, nc: int = 80, anchors=(), ch=(), inplace: bool = True):
        # ``inplace`` is accepted as YOLOAir's constructor does; decoding never writes in place.
        super().__init__()
        if any(len(level) != 2 for level in anchors):
            raise ValueError(f"YOLOX predicts one box per cell: 'anchors' must be 1, got {len(anchors[0]) // 2}")
        self.nc, self.nl, self.no = nc, len(ch) // 2, nc + 5
        self.register_buffer("stride", torch.ones(self.nl), persistent=False)
        cls_in, reg_in = ch[0::2], ch[1::2]
        self.cls_preds = nn.ModuleList(nn.Conv2d(c, nc, 1) for c in cls_in)
        self.reg_preds = nn.ModuleList(nn.Conv2d(c, 4, 1) for c in reg_in)
        self.obj_preds = nn.ModuleList(nn.Conv2d(c, 1, 1) for c in reg_in)
        self._grids: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def forward(self, xs: list[torch.Tensor]):
        raw = [
            torch.cat((reg(r), obj(r), cls(c)), 1)
            for cls, reg, obj, c, r in zip(self.cls_preds, self.reg_preds, self.obj_preds, xs[0::2], xs[1::2])
        ]
        if self.training:
            return raw
        decoded = self.decode(raw)
        return decoded if self.export else (decoded, raw)

    def decode(self, raw: list[torch.Tensor]) -> torch.Tensor:
        """Raw level maps -> ``(b, n, 5 + nc)``: centre ``(offset + cell) * stride``, size ``exp(t) * stride``
        in pixels, then sigmoid objectness and class scores (YOLOX's ``decode_outputs``)."""
        rows = flatten_levels(raw)
        cells, strides = self.grid_for(raw)
        xy = (rows[..., :2] + cells) * strides
        wh = rows[..., 2:4].exp() * strides
        return torch.cat((xy, wh, rows[..., 4:].sigmoid()), -1)

    def grid_for(self, raw: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Cell corners ``(n, 2)`` and strides ``(n, 1)`` for these level shapes, cached per shape."""
        shapes = [tuple(p.shape[2:]) for p in raw]
        key = (tuple(shapes), raw[0].device, raw[0].dtype)
        if key not in self._grids or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            self._grids[key] = cell_grid(shapes, self.stride.tolist(), raw[0])
        return self._grids[key]

    def bind_strides(self, stride: torch.Tensor) -> None:
        """Store the strides found by the builder's probe and set YOLOX's bias priors."""
        self.stride = stride.to(self.stride.device)
        self.reset_grids()
        self.initialize_biases()

    @torch.no_grad()
    def initialize_biases(self) -> None:
        """Class and objectness logits start at ``logit(PRIOR_PROB)`` (YOLOX's ``initialize_biases``);
        the box convs keep PyTorch's default bias."""
        prior = -math.log((1 - PRIOR_PROB) / PRIOR_PROB)
        for conv in (*self.cls_preds, *self.obj_preds):
            conv.bias.fill_(prior)

    def reset_grids(self) -> None:
        """Forget the cached decoding grids (strides, device or dtype changed)."""
        self._grids.clear()

    def _apply(self, fn, *args, **kwargs):
        self.reset_grids()
        return super()._apply(fn, *args, **kwargs)
