"""Flags and output conventions every command shares: ``--device``, ``--project/--name/--exist-ok``, ``--json``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from yolo_attn.utils.device import DEFAULT_DEVICE, DEVICE_HELP
from yolo_attn.utils.paths import increment_path


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=DEFAULT_DEVICE, help=DEVICE_HELP)


def add_run_dir_arguments(parser: argparse.ArgumentParser, project: str) -> None:
    """YOLOv5's ``--project``/``--name``/``--exist-ok``: results go to ``project/name`` (then ``name2``, ...)."""
    parser.add_argument("--project", default=project, help="parent folder of the results")
    parser.add_argument("--name", default="exp", help="results folder name (exp, exp2, ... unless --exist-ok)")
    parser.add_argument("--exist-ok", action="store_true", help="reuse <project>/<name> if it exists")


def run_dir(args: argparse.Namespace) -> Path:
    """The results folder the run-dir flags name (not created)."""
    return increment_path(Path(args.project) / args.name, args.exist_ok)


def add_json_argument(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--json", action="store_true", help=f"end with one JSON line: {what}")


def print_json(value: Any) -> None:
    """The machine-readable result: one JSON object on one line, always the command's last line."""
    print(json.dumps(value), flush=True)
