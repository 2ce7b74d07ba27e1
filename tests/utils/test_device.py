"""``--device``: the MPS spelling, accepted where torch has the backend and a clear error elsewhere."""

from __future__ import annotations

import pytest
import torch

from yolo_attn.errors import UserError
from yolo_attn.utils.device import device_indices, select_device


def test_device_mps_where_torch_has_it(monkeypatch):
    assert device_indices("mps") == []
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(UserError, match="--device mps: this torch has no usable MPS backend"):
        select_device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert select_device("mps") == torch.device("mps")
