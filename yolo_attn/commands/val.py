"""``yolo-attn val``: evaluate weights on a dataset split (YOLOv5's ``val.py`` flags and figures)."""

from __future__ import annotations

import argparse

from yolo_attn.checkpoint import load_model
from yolo_attn.commands.common import (
    add_config_arguments,
    add_device_argument,
    add_json_argument,
    add_run_dir_arguments,
    print_json,
    run_dir,
)
from yolo_attn.engine.validator import JSON_KEYS, EvalConfig, evaluate, format_results, resolve_split
from yolo_attn.metrics import COCO_BACKENDS

DEFAULTS = EvalConfig()


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", required=True, help="checkpoint (ours or an upstream YOLOv5/YOLOv7 .pt)")
    p.add_argument("--data", required=True, help="dataset YAML (YOLO or COCO layout)")
    p.add_argument("--split", default=DEFAULTS.split, choices=("train", "val", "test"), help="split to evaluate")
    p.add_argument("--img", "--imgsz", type=int, default=DEFAULTS.img_size, help="inference size (long side, pixels)")
    p.add_argument("--batch", "--batch-size", type=int, default=DEFAULTS.batch_size, help="batch size")
    p.add_argument("--conf", "--conf-thres", type=float, default=DEFAULTS.conf_thres, help="confidence threshold")
    p.add_argument("--iou", "--iou-thres", type=float, default=DEFAULTS.iou_thres, help="NMS IoU threshold")
    p.add_argument("--max-det", type=int, default=DEFAULTS.max_det, help="maximum detections per image")
    add_config_arguments(p, EvalConfig, only=("nms_free",))
    add_device_argument(p)
    p.add_argument("--workers", type=int, default=DEFAULTS.workers, help="dataloader workers (at most the CPU count)")
    p.add_argument("--half", action="store_true", help="FP16 inference (CUDA only)")
    p.add_argument("--save-json", action="store_true", help="write COCO-format predictions.json to the run folder")
    p.add_argument("--no-plots", action="store_true", help="skip the PR / F1 / confusion-matrix plots")
    p.add_argument("--no-coco", action="store_true", help="skip the COCOeval evaluation")
    p.add_argument("--coco-backend", default=DEFAULTS.coco_backend, choices=("auto", *COCO_BACKENDS),
                   help="COCOeval implementation; auto = faster-coco-eval (same numbers) if importable, "
                   "else pycocotools (the reference)")
    add_run_dir_arguments(p, "runs/val")
    add_json_argument(p, "the metrics")


def run(args: argparse.Namespace) -> int:
    source = resolve_split(args.data, args.split)  # a missing dataset fails before the weights load
    loaded = load_model(args.weights, device=args.device, fuse=True)
    save_dir = run_dir(args)
    config = EvalConfig(
        img_size=args.img, batch_size=args.batch, workers=args.workers, split=args.split, conf_thres=args.conf,
        iou_thres=args.iou, max_det=args.max_det, device=args.device, half=args.half, save_dir=save_dir,
        plots=not args.no_plots, coco=not args.no_coco, coco_backend=args.coco_backend, save_json=args.save_json,
        progress=True, nms_free=args.nms_free,
    )
    result = evaluate(loaded.model, source, config)
    print(format_results(result))
    print(f"Results saved to {save_dir}")
    if args.json:
        print_json({k: result[k] for k in JSON_KEYS})
    return 0
