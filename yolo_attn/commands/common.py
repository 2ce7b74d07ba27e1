"""Flags and output conventions every command shares: ``--device``, ``--project/--name/--exist-ok``, ``--json``,
``--plugin``, and the flags a library config declares on its fields (:mod:`yolo_attn.engine.options`)."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import typing
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from yolo_attn.engine.options import OPTION, Bounds, Option
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


def add_plugin_argument(parser: argparse.ArgumentParser) -> None:
    """``--plugin FILE.py|package.module`` (repeatable): blocks of the user's own code, loaded before the command
    runs (with ``$YOLO_ATTN_PLUGINS`` and installed ``yolo_attn.plugins`` entry points; see docs/plugins.md)."""
    parser.add_argument("--plugin", action="append", default=None, metavar="FILE.py|MODULE",
                        help="load blocks from this Python file or module before anything else (repeatable; also "
                        "$YOLO_ATTN_PLUGINS and installed 'yolo_attn.plugins' entry points)")


def add_json_argument(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--json", action="store_true", help=f"end with one JSON line: {what}")


def print_json(value: Any) -> None:
    """The machine-readable result: one JSON object on one line, always the command's last line."""
    print(json.dumps(value), flush=True)


@functools.cache
def bounded(kind: type, bounds: Bounds | None = None) -> Callable[[str], Any]:
    """An argparse ``type``: ``kind`` of the text, refused while parsing (one line, exit 2) outside ``bounds``
    (one function per pair, so that two commands declaring the same option compare equal)."""
    if bounds is None:
        return kind

    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {kind.__name__} value: {text!r}") from None
        if bounds is not None and not bounds.accepts(value):
            raise argparse.ArgumentTypeError(f"invalid value {text}: must be {bounds.describe()}")
        return value

    convert.__name__ = kind.__name__  # argparse names the type in some messages
    return convert


def _argument_kind(annotation: Any, declared: Option) -> dict[str, Any]:
    """argparse keywords for a field of this type: ``bool`` a switch, ``bool | str`` a flag with an optional value,
    ``int``/``float`` converted and checked against the option's bounds, ``tuple[int, ...]`` one or more of them,
    ``str`` as given (``None`` in a union is the unset default); a declared ``const`` makes the value optional."""
    if typing.get_origin(annotation) is tuple:
        return {"nargs": "+", "type": bounded(typing.get_args(annotation)[0], declared.bounds)}
    types = set(typing.get_args(annotation)) - {type(None)} or {annotation}
    if types == {bool}:
        return {"action": "store_true"}
    if types == {bool, str}:
        return {"nargs": "?", "const": True}
    (kind,) = types
    optional = {} if declared.const is None else {"nargs": "?", "const": declared.const}
    return optional if kind is str else {"type": bounded(kind, declared.bounds), **optional}


def add_config_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, config_type: type,
                         exclude: Collection[str] = (), only: Collection[str] | None = None) -> None:
    """One flag per field of the dataclass ``config_type`` declared with an ``Option``, except ``exclude`` (and, given
    ``only``, except those not in it): its spellings, default, help, choices and metavar as declared, its type from
    the annotation."""
    hints = typing.get_type_hints(config_type)
    for field in dataclasses.fields(config_type):
        declared = field.metadata.get(OPTION)
        if declared is None or field.name in exclude or (only is not None and field.name not in only):
            continue
        extras = {"choices": declared.choices, "metavar": declared.metavar}
        parser.add_argument(*declared.spellings(field.name), dest=field.name, default=field.default, help=declared.help,
                            **_argument_kind(hints[field.name], declared),
                            **{k: v for k, v in extras.items() if v is not None})


def config_from_args(args: argparse.Namespace, config_type: type, exclude: Collection[str] = ()) -> Any:
    """``config_type`` from the parsed flags that share a field's name (``exclude`` left at their defaults); the
    values of a one-or-more flag become a tuple."""
    names = [f.name for f in dataclasses.fields(config_type) if f.name not in exclude and hasattr(args, f.name)]
    values = {name: getattr(args, name) for name in names}
    return config_type(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
