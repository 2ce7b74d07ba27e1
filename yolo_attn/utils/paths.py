"""Run folders as YOLOv5 names them."""

from __future__ import annotations

from pathlib import Path


def increment_path(path: str | Path, exist_ok: bool = False) -> Path:
    """``path`` if free (or ``exist_ok``), else the first free ``path2``, ``path3``, ... (``runs/train/exp2``)."""
    path = Path(path)
    if exist_ok or not path.exists():
        return path
    n = 2
    while path.with_name(f"{path.name}{n}").exists():
        n += 1
    return path.with_name(f"{path.name}{n}")
