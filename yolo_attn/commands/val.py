"""``yolo-attn val``: evaluate weights on a dataset split (YOLOv5's ``val.py`` flags and figures); the evaluation
options are :class:`~yolo_attn.engine.validator.EvalConfig`'s fields."""

from __future__ import annotations

import argparse
import dataclasses

from yolo_attn.checkpoint import load_model
from yolo_attn.commands.common import (
    add_config_arguments,
    add_device_argument,
    add_json_argument,
    add_run_dir_arguments,
    config_from_args,
    print_json,
    run_dir,
)
from yolo_attn.engine.validator import JSON_KEYS, EvalConfig, evaluate, format_results, resolve_split


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", required=True, help="checkpoint (ours or an upstream YOLOv5/YOLOv7 .pt)")
    p.add_argument("--data", required=True, help="dataset YAML (YOLO or COCO layout)")
    add_config_arguments(p, EvalConfig)
    add_device_argument(p)
    p.add_argument("--no-plots", action="store_true", help="skip the PR / F1 / confusion-matrix plots")
    p.add_argument("--no-coco", action="store_true", help="skip the COCOeval evaluation")
    add_run_dir_arguments(p, "runs/val")
    add_json_argument(p, "the metrics")


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args, EvalConfig)
    source = resolve_split(args.data, config.split)  # a missing dataset fails before the weights load
    loaded = load_model(args.weights, device=args.device, fuse=True)
    save_dir = run_dir(args)
    config = dataclasses.replace(config, save_dir=save_dir, plots=not args.no_plots, coco=not args.no_coco,
                                 progress=True)
    result = evaluate(loaded.model, source, config)
    print(format_results(result))
    print(f"Results saved to {save_dir}")
    if args.json:
        print_json({k: result[k] for k in JSON_KEYS})
    return 0
