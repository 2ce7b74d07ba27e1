"""``yolo-attn export``: weights to ONNX (as YOLOv5's ``export.py --include onnx``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from yolo_attn.checkpoint import load_model
from yolo_attn.commands.common import add_config_arguments, add_device_argument, add_json_argument, bounded, print_json
from yolo_attn.engine.exporter import DEFAULT_OPSET, export_onnx, image_shape, require
from yolo_attn.engine.options import IMG_FLAGS, POSITIVE
from yolo_attn.engine.validator import EvalConfig


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", required=True, help="checkpoint (ours or an upstream YOLOv5/YOLOv7 .pt)")
    p.add_argument("--format", "--include", dest="format", default="onnx", choices=["onnx"],
                   help="export format (YOLOv5's --include onnx)")
    p.add_argument(*IMG_FLAGS, dest="img", type=bounded(int, POSITIVE), nargs="+", default=[640],
                   help="size, or height width")
    p.add_argument("--dynamic", action="store_true", help="symbolic batch, height and width")
    p.add_argument("--opset", type=bounded(int, POSITIVE), default=DEFAULT_OPSET, help="ONNX opset version")
    p.add_argument("--output", help="output path (default: the weights path with .onnx)")
    add_config_arguments(p, EvalConfig, only=("nms_free",))
    add_device_argument(p)
    add_json_argument(p, "the output path, size and input shape")


def run(args: argparse.Namespace) -> int:
    require("onnx")
    model = load_model(args.weights, device=args.device).model
    shape = image_shape(args.img, max(int(model.stride.max()), 1))
    output = Path(args.output) if args.output else Path(args.weights).with_suffix(".onnx")
    export_onnx(model, output, shape, args.dynamic, args.opset, args.nms_free)
    size_mb = output.stat().st_size / 1e6
    print(f"exported {args.weights} to {output} ({size_mb:.1f} MB, input 1x3x{shape[0]}x{shape[1]}, opset {args.opset}"
          f"{', dynamic' if args.dynamic else ''})")
    if args.json:
        print_json({"output": str(output), "size_mb": round(size_mb, 3), "input": [1, 3, *shape], "opset": args.opset,
                    "dynamic": args.dynamic, "nms_free": args.nms_free})
    return 0
