"""Run folders as YOLOv5 names them, and the cache folder."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "YOLO_ATTN_CACHE"


def cache_root() -> Path:
    """The one folder everything cached goes under (label caches in ``labels``, the demo set in ``demo``):
    ``$YOLO_ATTN_CACHE``, or ``~/.cache/yolo-attn``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "yolo-attn")


def increment_path(path: str | Path, exist_ok: bool = False) -> Path:
    """``path`` if free (or ``exist_ok``), else the first free ``path2``, ``path3``, ... (``runs/train/exp2``)."""
    path = Path(path)
    if exist_ok or not path.exists():
        return path
    n = 2
    while path.with_name(f"{path.name}{n}").exists():
        n += 1
    return path.with_name(f"{path.name}{n}")
