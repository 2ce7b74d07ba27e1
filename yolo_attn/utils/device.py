"""``--device``: one syntax for every command and the library.

``""`` (the default) picks the first CUDA device if there is one, else the CPU; ``"cpu"``; ``"mps"`` (Apple
silicon, where torch has the MPS backend); ``"0"``, ``"cuda:0"``; ``"0,1"`` for several GPUs (one process each
through torchrun: this process takes the first, or its ``LOCAL_RANK``'s); or a ``torch.device``. A device that is
not there is a :class:`UserError`.
"""

from __future__ import annotations

import torch

from yolo_attn.errors import UserError

DEFAULT_DEVICE = ""
DEVICE_HELP = "'' (first GPU if any, else CPU), cpu, mps, 0, cuda:0, or 0,1 for several GPUs through torchrun"


def device_indices(spec: str | None) -> list[int]:
    """The CUDA indices named by ``spec`` (``[]`` for ``''``, ``cpu`` and ``mps``); a malformed spec is a UserError."""
    text = (spec or "").strip().lower().replace("cuda:", "")
    if text in ("", "cpu", "mps"):
        return []
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(p.isdigit() for p in parts):
        raise UserError(f"--device {spec!r}: use {DEVICE_HELP}")
    return [int(p) for p in parts]


def select_device(spec: str | torch.device | None = DEFAULT_DEVICE) -> torch.device:
    """The device this process runs on, from a ``--device`` value."""
    if isinstance(spec, torch.device):
        if spec.type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"device {spec} requested but CUDA is not available (use --device cpu)")
        return spec
    text = (spec or "").strip().lower()
    indices = device_indices(text)
    if text == "cpu":
        return torch.device("cpu")
    if text == "mps":
        if not torch.backends.mps.is_available():
            raise UserError("--device mps: this torch has no usable MPS backend (Apple silicon with macOS 12.3+ and "
                            "an MPS build of torch); use --device cpu")
        return torch.device("mps")
    if not indices:
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        raise UserError(f"--device {spec}: CUDA is not available on this machine (use --device cpu)")
    if max(indices) >= torch.cuda.device_count():
        raise UserError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) visible")
    return torch.device(f"cuda:{indices[0]}")
