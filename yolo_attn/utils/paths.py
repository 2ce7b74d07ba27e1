"""Run folders as YOLOv5 names them."""

from __future__ import annotations

import argparse
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


def add_run_dir_arguments(parser: argparse.ArgumentParser, project: str) -> None:
    """YOLOv5's ``--project``/``--name``/``--exist-ok``: results go to ``project/name`` (then ``name2``, ...)."""
    parser.add_argument("--project", default=project, help="parent folder of the results")
    parser.add_argument("--name", default="exp", help="results folder name (exp, exp2, ... unless --exist-ok)")
    parser.add_argument("--exist-ok", action="store_true", help="reuse <project>/<name> if it exists")
