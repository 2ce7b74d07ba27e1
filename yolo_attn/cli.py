"""``yolo-attn`` command line: the command table. Each command is a module of :mod:`yolo_attn.commands` with
``configure_parser(parser)`` and ``run(args) -> int``; the work happens in the library it calls.

The library logs through the ``yolo_attn.*`` loggers and installs no handler; the command line gives them one for
the command's duration (:func:`cli_logging`): to stderr, info and up (``--quiet``: warnings and errors;
``--verbose``: debug too), so that stdout carries only the commands' results.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib
import logging
import os
import sys
from collections.abc import Iterator
from typing import NoReturn

from yolo_attn import __version__
from yolo_attn.errors import UserError
from yolo_attn.utils.cpu_share import mark_start

# command -> (module, one-line help); modules are imported only when their command runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("yolo_attn.commands.info", "model summary: layers, parameters, GFLOPs, strides"),
    "blocks": ("yolo_attn.commands.blocks", "list the registered blocks with their YAML signatures and costs"),
    "insert": ("yolo_attn.commands.insert", "insert a block into a model YAML, renumbering 'from' indices"),
    "train": ("yolo_attn.commands.train", "train a model"),
    "val": ("yolo_attn.commands.val", "evaluate a model (mAP, COCO metrics)"),
    "predict": ("yolo_attn.commands.predict", "run detection on images"),
    "export": ("yolo_attn.commands.export", "export a model to ONNX"),
    "benchmark": ("yolo_attn.commands.benchmark",
                  "speed (ms/img), mAP and file size per format (torch, ONNX), against the machine's fp32 GEMM "
                  "rate"),
    "ablate": ("yolo_attn.commands.ablate", "train and compare attention-block variants side by side"),
    "cam": ("yolo_attn.commands.cam",
            "class-activation maps and attention-block gates over images, models side by side"),
    "check-block": ("yolo_attn.commands.check_block", "the zoo's checks on one block (FILE.py:Class) as a report card"),
}
# Commands that build, load or list models: they take --plugin and load the user's plugins before they run.
PLUGIN_COMMANDS = frozenset({"info", "blocks", "insert", "train", "val", "predict", "export", "benchmark", "ablate",
                             "cam", "check-block"})


class CommandParser(argparse.ArgumentParser):
    """A command's parser. An error about one argument (a value out of range, an unknown choice) is one line,
    ``yolo-attn train: error: argument --epochs: invalid value 0: must be at least 1``; other usage errors show
    the command's usage first, and unknown flags get the command's closest flag (:meth:`reject_unknown`)."""

    def error(self, message: str) -> NoReturn:
        if message.startswith("argument "):
            self.exit(2, f"{self.prog}: error: {message}\n")
        super().error(message)

    def reject_unknown(self, extras: list[str]) -> NoReturn:
        """Exit 2 with the usage and each unknown flag's closest spelling among this command's flags."""
        known = [flag for action in self._actions for flag in action.option_strings]
        hints = []
        for extra in extras:
            flag = extra.split("=", 1)[0]
            close = difflib.get_close_matches(flag, known, n=1) if flag.startswith("-") else []
            hints += [f"(did you mean {close[0]} for {flag}?)"] if close else []
        super().error(" ".join([f"unrecognized arguments: {' '.join(extras)}", *hints]))


class LevelFormatter(logging.Formatter):
    """Info as the bare message; any other level names itself first (``warning: ...``, ``debug: ...``)."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        return message if record.levelno == logging.INFO else f"{record.levelname.lower()}: {message}"


def add_verbosity_arguments(parser: argparse.ArgumentParser, default: object) -> None:
    """``--quiet`` / ``--verbose``; accepted before the command and after it (there with ``argparse.SUPPRESS``
    defaults, so that an unset one keeps the value given before the command)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", default=default, help="log warnings and errors only")
    group.add_argument("-v", "--verbose", action="store_true", default=default, help="log debug messages too")


def log_level(args: argparse.Namespace) -> int:
    """The level the flags ask for; the processes of a torchrun job other than rank 0 log warnings and errors only."""
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    return max(level, logging.WARNING) if os.environ.get("RANK", "0") != "0" else level


@contextlib.contextmanager
def cli_logging(level: int) -> Iterator[None]:
    """The ``yolo_attn`` loggers at ``level`` into stderr while the command runs; then as they were."""
    logger = logging.getLogger("yolo_attn")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LevelFormatter("%(message)s"))
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def main(argv: list[str] | None = None) -> int:
    mark_start()  # the CPU load as the command starts: the first window of its thread governor
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="yolo-attn",
                                     description="YAML-driven YOLO builder and trainer with attention blocks")
    parser.add_argument("--version", action="version", version=f"yolo-attn {__version__}")
    add_verbosity_arguments(parser, default=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=CommandParser)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_verbosity_arguments(p, default=argparse.SUPPRESS)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.configure_parser(p)
            if name in PLUGIN_COMMANDS:
                from yolo_attn.commands.common import add_plugin_argument

                add_plugin_argument(p)
            p.set_defaults(run=module.run)
    args, extras = parser.parse_known_args(argv)
    if extras:
        sub.choices[args.command].reject_unknown(extras)
    with cli_logging(log_level(args)):
        try:
            if args.command in PLUGIN_COMMANDS:
                from yolo_attn.plugins import load_plugins  # before anything else the command does

                load_plugins(args.plugin or ())
            return int(args.run(args) or 0)
        except UserError as e:
            print(f"yolo-attn {args.command}: error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as e:
            if str(e):  # what the interrupted work has to say (a training run: its checkpoint and how to resume)
                print(f"\nyolo-attn {args.command}: {e}", file=sys.stderr)
            return 130


if __name__ == "__main__":
    sys.exit(main())
