"""Moving pretrained weights into a model built from a (possibly different) YAML."""

from __future__ import annotations

import torch
from torch import nn


def transfer_weights(model: nn.Module, state_dict: dict[str, torch.Tensor], exclude: tuple[str, ...] = ()) -> int:
    """Load every tensor whose key and shape match (and whose key contains none of ``exclude``), as YOLOv5's
    ``intersect_dicts``; returns the count."""
    own = model.state_dict()
    matched = {
        k: v for k, v in state_dict.items()
        if k in own and v.shape == own[k].shape and not any(x in k for x in exclude)
    }
    model.load_state_dict(matched, strict=False)
    return len(matched)
