"""``yolo-attn cam``: where the models look (class-activation maps on their detections) and what their
attention blocks attend to; one figure per image under ``runs/cam/exp``, one row per model."""

from __future__ import annotations

import argparse

from yolo_attn.commands.common import (
    add_config_arguments,
    add_device_argument,
    add_json_argument,
    add_run_dir_arguments,
    bounded,
    print_json,
)
from yolo_attn.engine.cam import METHODS, CamConfig, CamSettings, run_cam
from yolo_attn.engine.options import CONF_FLAGS, IMG_FLAGS, IOU_FLAGS, NON_NEGATIVE, POSITIVE, UNIT
from yolo_attn.engine.validator import EvalConfig

DEFAULTS = CamSettings()


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", required=True, nargs="+", help="one or more checkpoints: one figure row each")
    p.add_argument("--source", required=True, help="image file, directory or glob")
    p.add_argument("--layer", type=bounded(int, NON_NEGATIVE), nargs="+", metavar="IDX",
                   help="layers to compute the CAM at (default: the layers feeding the detection head)")
    p.add_argument("--method", choices=sorted(METHODS), default=DEFAULTS.method,
                   help="CAM method (default %(default)s)")
    p.add_argument("--class", dest="class_name", metavar="NAME",
                   help="explain this class's detections (name or index) instead of all detections")
    p.add_argument("--block", type=bounded(int, NON_NEGATIVE), nargs="+", metavar="IDX",
                   help="attention layers whose own gates to show (default: every layer that hands gates out)")
    p.add_argument(*IMG_FLAGS, dest="img", type=bounded(int, POSITIVE), default=DEFAULTS.img_size,
                   help="inference size")
    p.add_argument(*CONF_FLAGS, dest="conf", type=bounded(float, UNIT), default=DEFAULTS.conf,
                   help="confidence threshold of the explained boxes")
    p.add_argument(*IOU_FLAGS, dest="iou", type=bounded(float, UNIT), default=DEFAULTS.iou, help="NMS IoU threshold")
    add_config_arguments(p, EvalConfig, only=("nms_free",))
    p.add_argument("--dpi", type=bounded(int, POSITIVE), default=CamConfig.dpi,
                   help="figure resolution (default %(default)s)")
    add_device_argument(p)
    add_run_dir_arguments(p, "runs/cam")
    add_json_argument(p, "the figures and, per image and model, detections and CAM means inside/outside the boxes")


def run(args: argparse.Namespace) -> int:
    settings = CamSettings(
        layers=tuple(args.layer) if args.layer else None, method=args.method, class_name=args.class_name,
        blocks=tuple(args.block) if args.block else None, img_size=args.img, conf=args.conf, iou=args.iou,
        device=args.device, nms_free=args.nms_free,
    )
    summary = run_cam(CamConfig(weights=tuple(args.weights), source=args.source, settings=settings,
                                project=args.project, name=args.name, exist_ok=args.exist_ok, dpi=args.dpi))
    for figure in summary["figures"]:
        print(f"wrote {figure}")
    print(f"results saved to {summary['save_dir']}")
    if args.json:
        print_json(summary)
    return 0
