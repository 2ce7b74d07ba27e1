"""End-to-end (NMS-free) anchor-free heads: YOLOv10's dual-assignment head (Wang et al., "YOLOv10: Real-Time
End-to-End Object Detection", arXiv:2405.14458, 2024) and YOLO26's (Ultralytics, no paper), as Ultralytics 8.4
builds them (``nn/modules/head.py``: ``Detect`` with ``end2end``, ``v10Detect``).

Beside Ultralytics' anchor-free head (:class:`~yolo_attn.nn.heads.anchor_free.AnchorFreeDetect`: box branch ``cv2``,
class branch ``cv3``), a second, identically built pair ``one2one_cv2`` / ``one2one_cv3`` reads the same features.
In training the first pair is supervised one-to-many (several points per object, as YOLOv8) and the second
one-to-one (a single point per object); the one-to-one branch sees its inputs detached, so only the one-to-many
loss shapes the backbone and neck. At inference either branch can give the detections: the one-to-one branch alone,
the ``max_det`` best (point, class) pairs by score with no NMS (``nms_free``, Ultralytics' ``nms=False``), or,
by default as in Ultralytics 8.4, the one-to-many branch decoded like YOLOv8's head, for NMS.

YAML: YOLO26 writes Ultralytics' ``Detect, [nc]`` with top-level ``end2end: True`` and ``reg_max: 1`` (sides
regressed directly in strides, no DFL); the anchor-free head's rule then builds :class:`EndToEndDetect`. YOLOv10
writes ``v10Detect, [nc]``: always end-to-end, ``reg_max`` 16 and the depth-wise class branch, whatever the YAML's
top level says (as Ultralytics' ``parse_model``, which passes it neither key).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch

from yolo_attn.nn.heads.anchor_free import DEFAULT_REG_MAX, AnchorFreeDetect, AnchorFreeHeadRule
from yolo_attn.nn.heads.contract import HeadContract
from yolo_attn.nn.registry import register
from yolo_attn.nn.rules import LayerContext, Resolved, YamlRule

DEFAULT_MAX_DET = 300


@register(rule=AnchorFreeHeadRule())
class EndToEndDetect(AnchorFreeDetect):
    """YOLO26's head: Ultralytics' anchor-free head plus a one-to-one pair of branches, ``one2one_cv2`` /
    ``one2one_cv3`` (copies of ``cv2`` / ``cv3`` at construction). ``Head(nc, ch, reg_max, legacy)``.

    Training returns ``{"one2many": maps, "one2one": maps}``, each a list of per-level ``(b, 4 * reg_max + nc, ny,
    nx)`` maps (box then class logits, as :class:`AnchorFreeDetect`'s training output); the one-to-one maps are
    computed from detached features. Eval returns ``(detections, raw)``. With ``nms_free`` (set by
    :func:`~yolo_attn.nn.heads.contract.configure_end_to_end`), ``detections`` are ``(b, k, 6)`` rows (x1, y1,
    x2, y2 in input pixels, score, class), best first, ``k = min(max_det, cells)``, from the one-to-one branch
    alone; without it (the default, as Ultralytics 8.4 validates and predicts), the one-to-many branch decoded as
    :class:`AnchorFreeDetect` decodes, for NMS. ``raw`` is the training output's dict (both branches: validation
    reports the loss of a fused copy, so fusing keeps the one-to-many branch, which Ultralytics' ``fuse`` drops).
    With ``export`` the detections alone, and only the branch that gives them runs (as Ultralytics 8.4 exports: the
    one-to-many output for NMS unless ``nms=False``). YAML: ``Detect, [nc]`` with top-level ``end2end: True`` (or
    ``[nc, reg_max]`` as ``EndToEndDetect``).

    ``max_det`` (300) and ``agnostic`` are set by the engine
    (:func:`~yolo_attn.nn.heads.contract.configure_end_to_end`): top-k over (point, class) pairs, or with
    ``agnostic`` over points, each with its best class.
    """

    contract = HeadContract(default_loss="e2e", losses=("e2e",), eval_loss="e2e", anchor_based=False,
                            objectness=False, upstream="ultralytics", end_to_end=True,
                            class_branches=("cv3", "one2one_cv3"))
    max_det = DEFAULT_MAX_DET
    agnostic = False
    nms_free = False

    def __init__(self, nc: int = 80, ch=(), reg_max: int = DEFAULT_REG_MAX, legacy: bool = True):
        super().__init__(nc, ch, reg_max, legacy)
        self.one2one_cv2 = copy.deepcopy(self.cv2)
        self.one2one_cv3 = copy.deepcopy(self.cv3)

    def forward(self, xs: list[torch.Tensor]):
        if self.export:  # an exported graph runs the one branch whose output it gives
            if self.nms_free:
                return self.select(self.decode(self.level_maps(xs, self.one2one_cv2, self.one2one_cv3), xyxy=True))
            return self.decode(self.level_maps(xs, self.cv2, self.cv3))
        one2one_inputs = [x.detach() for x in xs] if self.training else xs
        branches = {"one2many": self.level_maps(xs, self.cv2, self.cv3),
                    "one2one": self.level_maps(one2one_inputs, self.one2one_cv2, self.one2one_cv3)}
        if self.training:
            return branches
        if not self.nms_free:
            return self.decode(branches["one2many"]), branches
        return self.select(self.decode(branches["one2one"], xyxy=True)), branches

    def select(self, decoded: torch.Tensor) -> torch.Tensor:
        """``(b, n, 4 + nc)`` decoded rows (x1, y1, x2, y2, class scores) -> the ``(b, k, 6)`` detections.

        Per image, the ``k`` points with the highest best-class score are the candidates; among their ``k * nc``
        (point, class) scores the ``k`` highest are kept, so one point may be kept for several classes.
        """
        boxes, scores = decoded.split((4, self.nc), -1)
        k = min(self.max_det, scores.shape[1])
        if self.agnostic:
            best, labels = scores.max(-1)
            top, points = best.topk(k, dim=1)
            labels = labels.gather(1, points)
        else:
            candidates = scores.amax(-1).topk(k, dim=1).indices
            pool = scores.gather(1, candidates.unsqueeze(-1).expand(-1, -1, self.nc))
            top, pairs = pool.flatten(1).topk(k, dim=1)
            labels, points = pairs % self.nc, candidates.gather(1, pairs // self.nc)
        kept = boxes.gather(1, points.unsqueeze(-1).expand(-1, -1, 4))
        return torch.cat((kept, top.unsqueeze(-1), labels.unsqueeze(-1).to(kept.dtype)), -1)

    @torch.no_grad()
    def initialize_biases(self) -> None:
        """The anchor-free head's priors on both pairs of branches."""
        super().initialize_biases()
        self.set_bias_priors(self.one2one_cv2, self.one2one_cv3)


@dataclass(frozen=True)
class V10HeadRule(YamlRule):
    """``[nc]`` -> ``v10Detect(nc, ch=[c_in per input])``; the YAML's top-level ``end2end`` / ``reg_max`` are not
    read (Ultralytics' ``parse_model`` passes them to ``Detect`` only)."""

    signature: str = "[nc]"

    def resolve(self, args: list[Any], ctx: LayerContext) -> Resolved:
        nc_ok = len(args) == 1 and isinstance(args[0], int) and not isinstance(args[0], bool) and args[0] > 0
        if not nc_ok:
            raise ValueError(f"expects [nc] (a positive int), got {args!r}")
        return Resolved([args[0], list(ctx.c_in)], ctx.c_in[0], ctx.number)


@register(name="v10Detect", rule=V10HeadRule())
class V10Detect(EndToEndDetect):
    """YOLOv10's head (Wang et al., arXiv:2405.14458): :class:`EndToEndDetect` with ``reg_max`` 16 and the light
    class branch (depth-wise 3x3 + point-wise 1x1, twice, then 1x1 to ``nc``) in both pairs. YAML: ``[nc]``;
    outputs as :class:`EndToEndDetect`'s."""

    def __init__(self, nc: int = 80, ch=()):
        super().__init__(nc, ch, DEFAULT_REG_MAX, legacy=False)
