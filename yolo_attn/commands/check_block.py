"""``yolo-attn check-block FILE.py:Class`` (or a registered name): the zoo's checks on one block, as a report card;
exit code 1 when a check fails."""

from __future__ import annotations

import argparse

from yolo_attn.commands.common import add_json_argument, bounded, print_json
from yolo_attn.engine.block_check import check_block, resolve_block
from yolo_attn.engine.options import NON_NEGATIVE


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("block", metavar="FILE.py:Class|NAME", help="a class of a plugin file (loaded as with --plugin), "
                   "or a registered block name")
    p.add_argument("--args", default=None, help="the block's YAML args after yolov5n's layer 9 and yolo11n's layer 10, "
                   'e.g. "[256]" (parsed, never evaluated); default: its example args fitted to the layer')
    p.add_argument("--repeats", type=bounded(int, NON_NEGATIVE), default=10,
                   help="timed forward passes for the latency (0: no timing)")
    add_json_argument(p, "the report card")


def run(args: argparse.Namespace) -> int:
    card = check_block(resolve_block(args.block), args.args, args.repeats)
    print("\n".join(card.lines()))
    if args.json:
        print_json(card.as_dict())
    return 0 if card.ok else 1
