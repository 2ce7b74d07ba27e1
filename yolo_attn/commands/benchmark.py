"""``yolo-attn benchmark``: ms/img, mAP and file size of a checkpoint per format (torch, ONNX), and the share of the
machine's fp32 GEMM rate its forward reaches (as Ultralytics' ``yolo benchmark``); the options are
:class:`~yolo_attn.engine.benchmark.BenchmarkConfig`'s fields and the validator's."""

from __future__ import annotations

import argparse
import dataclasses

from yolo_attn.commands.common import (
    add_config_arguments,
    add_device_argument,
    add_json_argument,
    add_run_dir_arguments,
    config_from_args,
    print_json,
    run_dir,
)
from yolo_attn.engine.benchmark import CSV_NAME, BenchmarkConfig, format_table, run_benchmark
from yolo_attn.engine.validator import EvalConfig

EVAL_OPTIONS = ("img_size", "batch_size", "workers", "split", "conf_thres", "iou_thres", "max_det")


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", required=True, help="checkpoint (ours or an upstream YOLOv5/YOLOv7 .pt)")
    p.add_argument("--data", required=True, help="dataset YAML (YOLO or COCO layout) for the mAP")
    add_config_arguments(p, BenchmarkConfig)
    validation = p.add_argument_group("validation", "the options of yolo-attn val; --batch is also the second batch "
                                      "size timed (after 1)")
    add_config_arguments(validation, EvalConfig, only=EVAL_OPTIONS)
    add_device_argument(p)
    add_run_dir_arguments(p, "runs/benchmark")
    add_json_argument(p, '{"rows": [...], "gemm_gflops_per_s": ..., "model_gflops": ..., ...}')


def run(args: argparse.Namespace) -> int:
    evaluation = dataclasses.replace(config_from_args(args, EvalConfig), coco=False, progress=True)
    config = dataclasses.replace(config_from_args(args, BenchmarkConfig), eval=evaluation)
    result = run_benchmark(config, run_dir(args))
    print(format_table(result))
    print(f"Results saved to {result.save_dir / CSV_NAME}")
    if args.json:
        print_json(result.as_json())
    return 0
