"""``yolo-attn info``: print a model's layer table, the YAML rule of each plugin block in it, and totals."""

from __future__ import annotations

import argparse

from yolo_attn.commands.common import add_json_argument, bounded, print_json
from yolo_attn.engine.options import IMG_FLAGS, POSITIVE
from yolo_attn.nn.builder import build_model
from yolo_attn.nn.summary import layer_table, summarize
from yolo_attn.plugins import plugin_block_lines


def configure_parser(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--cfg", help="model YAML")
    src.add_argument("--weights", help="checkpoint (ours or an upstream YOLOv5/YOLOv7 .pt)")
    p.add_argument("--nc", type=bounded(int, POSITIVE), default=None, help="override the number of classes")
    p.add_argument(*IMG_FLAGS, dest="img", type=bounded(int, POSITIVE), default=640, help="image size for GFLOPs")
    add_json_argument(p, "the totals")


def run(args: argparse.Namespace) -> int:
    if args.weights:
        from yolo_attn.checkpoint import load_model

        model = load_model(args.weights).model
    else:
        model = build_model(args.cfg, nc=args.nc)
    summary = summarize(model, args.img)
    print(layer_table(model))
    for line in plugin_block_lines(model):
        print(line)
    print(
        f"summary: {summary.layers} layers, {summary.params:,} parameters, {summary.gflops:.2f} GFLOPs at {args.img}, "
        f"strides {summary.strides}"
    )
    if args.json:
        print_json(summary.as_dict())
    return 0
