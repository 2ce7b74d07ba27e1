"""``yolo-attn`` command line: the command table. Each command is a module of :mod:`yolo_attn.commands` with
``configure_parser(parser)`` and ``run(args) -> int``; the work happens in the library it calls."""

from __future__ import annotations

import argparse
import importlib
import sys

from yolo_attn import __version__
from yolo_attn.errors import UserError

# command -> (module, one-line help); modules are imported only when their command runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("yolo_attn.commands.info", "model summary: layers, parameters, GFLOPs, strides"),
    "blocks": ("yolo_attn.commands.blocks", "list the registered blocks with their YAML signatures and costs"),
    "insert": ("yolo_attn.commands.insert", "insert a block into a model YAML, renumbering 'from' indices"),
    "train": ("yolo_attn.commands.train", "train a model"),
    "val": ("yolo_attn.commands.val", "evaluate a model (mAP, COCO metrics)"),
    "predict": ("yolo_attn.commands.predict", "run detection on images"),
    "export": ("yolo_attn.commands.export", "export a model to ONNX"),
    "ablate": ("yolo_attn.commands.ablate", "train and compare attention-block variants side by side"),
    "cam": ("yolo_attn.commands.cam", "class-activation maps and attention-block gates over images, models side by side"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="yolo-attn", description="YAML-driven YOLO builder and trainer with attention blocks")
    parser.add_argument("--version", action="version", version=f"yolo-attn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.configure_parser(p)
            p.set_defaults(run=module.run)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except UserError as e:
        print(f"yolo-attn {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
