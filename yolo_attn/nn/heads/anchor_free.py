"""Ultralytics' anchor-free, decoupled detection head (YOLOv8, Jocher et al. 2023; YOLO11 2024; YOLO12, Tian, Ye,
Doermann 2025, arXiv:2502.12524; ultralytics/ultralytics ``nn/modules/head.py`` Detect).

Every cell of every level is a candidate (anchor point at the cell centre). A box branch ``cv2`` predicts, for
each of the four sides, a distribution over ``reg_max`` distances (in strides) whose expectation is the distance
from the anchor point (Distribution Focal Loss decoding; Li et al., "Generalized Focal Loss", NeurIPS 2020,
arXiv:2006.04388); a class branch ``cv3`` predicts class logits, without objectness.

The name clash: YOLOv5's ``Detect`` and Ultralytics' ``Detect`` share a YAML name. YOLOv5 writes
``[nc, anchors]``, Ultralytics ``[nc]``; the anchor-based ``Detect`` rule builds this head, registered as
``AnchorFreeDetect``, when a ``Detect`` line has ``nc`` alone (:class:`~yolo_attn.nn.rules.DetectionHead`'s
``without_anchors``). Both YAMLs build unmodified, and the builder names no head. With the YAML's top-level
``end2end: True`` (YOLO26) the same line builds the end-to-end head of :mod:`yolo_attn.nn.heads.end_to_end`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from yolo_attn.nn.blocks.conv import Conv, DWConv
from yolo_attn.nn.heads.contract import HeadContract
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import LayerContext, Resolved, YamlRule

DEFAULT_REG_MAX = 16


def anchor_points(shapes: list[tuple[int, ...]], strides: list[float], like: torch.Tensor):
    """Cell centres ``(n, 2)`` as (x, y) in grid units of their level, and each one's stride ``(n, 1)``, for levels
    of ``shapes`` (h, w) in order, rows first (the order of the flattened head outputs)."""
    points, stride_rows = [], []
    for (h, w), s in zip(shapes, strides, strict=True):
        ys = torch.arange(h, device=like.device, dtype=like.dtype) + 0.5
        xs = torch.arange(w, device=like.device, dtype=like.dtype) + 0.5
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack((grid_x, grid_y), -1).view(-1, 2))
        stride_rows.append(torch.full((h * w, 1), float(s), device=like.device, dtype=like.dtype))
    return torch.cat(points), torch.cat(stride_rows)


def _output_bias(branch: nn.Module) -> torch.Tensor:
    """The bias of the output conv that ends ``branch`` (an ``nn.Sequential``)."""
    assert isinstance(branch, nn.Sequential)
    bias = branch[-1].bias
    assert isinstance(bias, torch.Tensor)
    return bias


class DFL(nn.Module):
    """Expected distance of each side from its ``reg_max``-bin distribution: softmax over the bins, then a fixed
    1x1 conv with weights 0..reg_max-1 (kept as a frozen parameter, as Ultralytics' checkpoints carry it)."""

    def __init__(self, reg_max: int = DEFAULT_REG_MAX):
        super().__init__()
        self.reg_max = reg_max
        self.conv = nn.Conv2d(reg_max, 1, 1, bias=False).requires_grad_(False)
        with torch.no_grad():
            # from a list: torch.arange on the resource guard's meta device imports PyTorch's decompositions (2 s)
            self.conv.weight.copy_(torch.tensor(list(range(reg_max)), dtype=torch.float).view(1, reg_max, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(b, 4 * reg_max, n)`` -> ``(b, 4, n)``."""
        b, _, n = x.shape
        return self.conv(x.view(b, 4, self.reg_max, n).transpose(2, 1).softmax(1)).view(b, 4, n)


def _is_count(value: Any) -> bool:
    """A positive int, not a bool."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@dataclass(frozen=True)
class AnchorFreeHeadRule(YamlRule):
    """``[nc, reg_max]`` -> ``Head(nc, ch=[c_in per input], reg_max, legacy)``.

    ``reg_max`` not written in the line is the YAML's top-level ``reg_max`` (YOLO26: 1, sides regressed directly
    without DFL), else 16; ``end_to_end`` names the registered head built instead when the YAML's top-level
    ``end2end`` is true (YOLO26), as Ultralytics' ``parse_model`` hands both keys to its ``Detect``. ``legacy``
    (YOLOv8's plain 3x3 class branch) unless an earlier layer's class sets ``depthwise_detect_head`` (C3k2, A2C2f:
    YOLO11/12 use a depth-wise class branch), the rule Ultralytics' ``parse_model`` applies.
    """

    signature: str = "[nc, reg_max=16]"
    end_to_end: str | None = None

    def resolve(self, args: list[Any], ctx: LayerContext) -> Resolved:
        if not 1 <= len(args) <= 2 or not all(_is_count(a) for a in args):
            raise ValueError(f"expects [nc] or [nc, reg_max] (positive ints), got {args!r}")
        legacy = not any(getattr(cls, "depthwise_detect_head", False) for cls in ctx.earlier)
        reg_max = args[1] if len(args) > 1 else ctx.options.get("reg_max", DEFAULT_REG_MAX)
        if not _is_count(reg_max):
            raise ValueError(f"top-level 'reg_max' must be a positive int, got {reg_max!r}")
        end2end = ctx.options.get("end2end")
        if end2end is not None and not isinstance(end2end, bool):
            raise ValueError(f"top-level 'end2end' must be true or false, got {end2end!r}")
        block = None
        if end2end and self.end_to_end:
            from yolo_attn.nn.registry import lookup  # deferred: the registry imports the heads

            block = lookup(self.end_to_end).cls
        return Resolved([args[0], list(ctx.c_in), reg_max, legacy], ctx.c_in[0], ctx.number, block)


class CellPointHead(nn.Module):
    """Base of the anchor-free heads that predict at every cell of every level: the strides the builder binds
    (``bind_strides``, which then calls the subclass's ``initialize_biases``) and the cells' anchor points, cached
    per level shapes, device and dtype."""

    stride: torch.Tensor  # buffer

    def __init__(self, nl: int):
        super().__init__()
        self.nl = nl
        self.register_buffer("stride", torch.ones(nl), persistent=False)
        self._anchors: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def anchors_for(self, raw: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Cell centres ``(n, 2)`` in grid units and strides ``(n, 1)`` of the level maps ``raw`` (see
        :func:`anchor_points`)."""
        shapes = [tuple(p.shape[2:]) for p in raw]
        key = (tuple(shapes), raw[0].device, raw[0].dtype)
        if key not in self._anchors or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            self._anchors[key] = anchor_points(shapes, self.stride.tolist(), raw[0])
        return self._anchors[key]

    def bind_strides(self, stride: torch.Tensor) -> None:
        """Store the strides found by the builder's probe and set the head's bias priors."""
        self.stride = stride.to(self.stride.device)
        self.reset_grids()
        self.initialize_biases()

    def initialize_biases(self) -> None:
        raise NotImplementedError

    def reset_grids(self) -> None:
        """Forget the cached anchor points (strides, device or dtype changed)."""
        self._anchors.clear()

    def _apply(self, fn, *args, **kwargs):
        self.reset_grids()
        return super()._apply(fn, *args, **kwargs)


@register(rule=AnchorFreeHeadRule(end_to_end="EndToEndDetect"))
class AnchorFreeDetect(CellPointHead):
    """Ultralytics' YOLOv8/11/12 head: per level ``cv2`` (box distributions) and ``cv3`` (class logits).
    YAML: ``[nc]`` under the name ``Detect`` (or ``[nc, reg_max]`` as ``AnchorFreeDetect``).

    Training returns per-level maps ``(b, 4 * reg_max + nc, ny, nx)``; eval returns ``(decoded (b, n, 4 + nc) rows
    (cx, cy, w, h, class scores...) in input pixels, raw maps)``; with ``export`` the decoded tensor alone.
    """

    contract = HeadContract(default_loss="v8", losses=("v8",), eval_loss="v8", anchor_based=False, objectness=False,
                            upstream="ultralytics", class_branches=("cv3",))
    export = False  # set by the exporter: eval forward then returns only the decoded tensor

    def __init__(self, nc: int = 80, ch=(), reg_max: int = DEFAULT_REG_MAX, legacy: bool = True):
        super().__init__(len(ch))
        self.nc, self.reg_max = nc, reg_max
        self.no = nc + 4 * reg_max
        box_width, class_width = max(16, ch[0] // 4, 4 * reg_max), max(ch[0], min(nc, 100))
        self.cv2 = nn.ModuleList(
            nn.Sequential(Conv(c, box_width, 3), Conv(box_width, box_width, 3), nn.Conv2d(box_width, 4 * reg_max, 1))
            for c in ch
        )
        self.cv3 = nn.ModuleList(self.class_branch(c, class_width, legacy) for c in ch)
        self.dfl = DFL(reg_max) if reg_max > 1 else nn.Identity()

    def class_branch(self, c: int, width: int, legacy: bool) -> nn.Sequential:
        """Two 3x3 convs (YOLOv8), or two depth-wise 3x3 + point-wise pairs (YOLO11/12), then 1x1 to ``nc``."""
        if legacy:
            return nn.Sequential(Conv(c, width, 3), Conv(width, width, 3), nn.Conv2d(width, self.nc, 1))
        return nn.Sequential(
            nn.Sequential(DWConv(c, c, 3), Conv(c, width, 1)),
            nn.Sequential(DWConv(width, width, 3), Conv(width, width, 1)),
            nn.Conv2d(width, self.nc, 1),
        )

    def forward(self, xs: list[torch.Tensor]):
        raw = self.level_maps(xs, self.cv2, self.cv3)
        if self.training:
            return raw
        decoded = self.decode(raw)
        return decoded if self.export else (decoded, raw)

    def level_maps(self, xs: list[torch.Tensor], boxes: nn.ModuleList, classes: nn.ModuleList) -> list[torch.Tensor]:
        """Per level, ``(b, 4 * reg_max + nc, ny, nx)``: the box branch's then the class branch's outputs."""
        return [torch.cat((box(x), cls(x)), 1) for box, cls, x in zip(boxes, classes, xs, strict=True)]

    def decode(self, raw: list[torch.Tensor], xyxy: bool = False) -> torch.Tensor:
        """Raw level maps -> ``(b, n, 4 + nc)``: boxes (cx, cy, w, h; with ``xyxy`` x1, y1, x2, y2) in pixels, then
        sigmoid class scores."""
        flat = torch.cat([p.flatten(2) for p in raw], 2)
        box, cls = flat.split((4 * self.reg_max, self.nc), 1)
        points, strides = (t.T for t in self.anchors_for(raw))
        left_top, right_bottom = self.dfl(box).chunk(2, 1)
        x1y1, x2y2 = points - left_top, points + right_bottom
        corners = torch.cat((x1y1, x2y2), 1) if xyxy else torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), 1)
        return torch.cat((corners * strides, cls.sigmoid()), 1).transpose(1, 2)

    @torch.no_grad()
    def initialize_biases(self) -> None:
        """Box logits 2.0; class logits log(5 / nc / cells), about 5 objects per 640 image per level."""
        self.set_bias_priors(self.cv2, self.cv3)

    @torch.no_grad()
    def set_bias_priors(self, boxes: nn.ModuleList, classes: nn.ModuleList) -> None:
        """The priors of :meth:`initialize_biases` on one pair of box and class branches."""
        for box, cls, s in zip(boxes, classes, self.stride.tolist(), strict=True):
            _output_bias(box).fill_(2.0)
            _output_bias(cls)[: self.nc] = math.log(5 / self.nc / (640 / s) ** 2)
