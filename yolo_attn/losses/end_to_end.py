"""The loss of end-to-end (NMS-free) heads: YOLOv10's consistent dual assignments (Wang et al., "YOLOv10: Real-Time
End-to-End Object Detection", arXiv:2405.14458, 2024) as Ultralytics 8.4 trains YOLOv10 and YOLO26 (its ``E2ELoss``).

Both branches of the head are trained with the anchor-free loss (:class:`~yolo_attn.losses.anchor_free.AnchorFreeLoss`):
the one-to-many branch with task-aligned top-10 assignment, the one-to-one branch with top-7 then the single best
point per object, which is what lets inference skip NMS. Their sum is weighted: the one-to-many share starts at 0.8
and decays linearly to 0.1 at the last epoch; the one-to-one branch gets the rest. The reported items are the
one-to-one branch's (the branch used at inference).
"""

from __future__ import annotations

from typing import Any

import torch

from yolo_attn.losses.anchor_free import AnchorFreeLoss
from yolo_attn.losses.registry import register_loss
from yolo_attn.nn.heads.anchor_free import AnchorFreeDetect

ONE_TO_MANY_TOP_K = 10
ONE_TO_ONE_TOP_K, ONE_TO_ONE_TOP_K2 = 7, 1
ONE_TO_MANY_START, ONE_TO_MANY_END = 0.8, 0.1


def one_to_many_weight(epoch: int, epochs: int) -> float:
    """The one-to-many branch's share of the loss in ``epoch`` (0-based) of ``epochs``: 0.8 falling linearly to
    0.1 at the last epoch."""
    progress = max(1 - epoch / max(epochs - 1, 1), 0)
    return progress * (ONE_TO_MANY_START - ONE_TO_MANY_END) + ONE_TO_MANY_END


@register_loss("e2e")
class EndToEndLoss:
    """``loss(preds, targets) -> (weighted sum * batch_size, detached one-to-one [box, cls, dfl | l1])`` for the
    training output ``{"one2many": [per-level maps], "one2one": [per-level maps]}`` of an end-to-end head."""

    def __init__(self, head: AnchorFreeDetect, hyp: dict[str, Any]):
        self.one_to_many = AnchorFreeLoss(head, hyp, top_k=ONE_TO_MANY_TOP_K)
        self.one_to_one = AnchorFreeLoss(head, hyp, top_k=ONE_TO_ONE_TOP_K, top_k2=ONE_TO_ONE_TOP_K2)
        self.item_names = self.one_to_one.item_names
        self.weight = ONE_TO_MANY_START

    def set_epoch(self, epoch: int, epochs: int) -> None:
        """Called by the trainer before each epoch."""
        self.weight = one_to_many_weight(epoch, epochs)

    def __call__(self, preds: dict[str, list[torch.Tensor]], targets: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        many, _ = self.one_to_many(preds["one2many"], targets)
        one, items = self.one_to_one(preds["one2one"], targets)
        return many * self.weight + one * max(1.0 - self.weight, 0.0), items
