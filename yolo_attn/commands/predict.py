"""``yolo-attn predict``: annotated images, YOLO-format labels and COCO-style json under ``runs/predict/exp``."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np
import torch

from yolo_attn.checkpoint import load_model
from yolo_attn.commands.common import (
    add_config_arguments,
    add_device_argument,
    add_json_argument,
    add_run_dir_arguments,
    bounded,
    print_json,
    run_dir,
)
from yolo_attn.engine.options import CONF_FLAGS, IMG_FLAGS, IOU_FLAGS, NON_NEGATIVE, POSITIVE, UNIT
from yolo_attn.engine.predictor import box_crops, coco_records, image_paths, predict, read_images, yolo_label_lines
from yolo_attn.engine.validator import EvalConfig, inference_state
from yolo_attn.nn.heads import check_nms_free
from yolo_attn.nn.model import model_device
from yolo_attn.utils.annotate import draw_detections


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", required=True, help="checkpoint (ours or an upstream YOLOv5/YOLOv7 .pt)")
    p.add_argument("--source", required=True, help="image file, directory or glob")
    p.add_argument(*IMG_FLAGS, dest="img", type=bounded(int, POSITIVE), default=640, help="inference size (long side)")
    p.add_argument(*CONF_FLAGS, dest="conf", type=bounded(float, UNIT), default=0.25, help="confidence threshold")
    p.add_argument(*IOU_FLAGS, dest="iou", type=bounded(float, UNIT), default=0.45, help="NMS IoU threshold")
    p.add_argument("--max-det", type=bounded(int, POSITIVE), default=1000, help="maximum detections per image")
    add_device_argument(p)
    p.add_argument("--classes", type=bounded(int, NON_NEGATIVE), nargs="+", help="keep only these class indices")
    p.add_argument("--agnostic-nms", action="store_true", help="class-agnostic NMS")
    add_config_arguments(p, EvalConfig, only=("nms_free",))
    p.add_argument("--save-txt", action="store_true", help="write YOLO-format labels to <save dir>/labels/")
    p.add_argument("--save-conf", action="store_true", help="append the confidence to --save-txt lines")
    p.add_argument("--save-json", action="store_true", help="write COCO-style predictions.json")
    p.add_argument("--save-crop", action="store_true", help="write each detection's crop to <save dir>/crops/<class>/")
    p.add_argument("--nosave", action="store_true", help="do not write the annotated images")
    p.add_argument("--hide-labels", action="store_true", help="boxes without class names or scores")
    p.add_argument("--hide-conf", action="store_true", help="class names without scores")
    add_run_dir_arguments(p, "runs/predict")
    add_json_argument(p, "the save folder and the detections per image")


def save_outputs(args: argparse.Namespace, save_dir: Path, path: Path, image: np.ndarray, det: torch.Tensor,
                 names: list[str]) -> None:
    """The files one image's detections go to: the annotated image, its labels and its crops, as asked."""
    if not args.nosave:
        drawn = draw_detections(image, det, names, hide_labels=args.hide_labels, hide_conf=args.hide_conf)
        cv2.imwrite(str(save_dir / path.name), drawn)
    if args.save_txt:
        lines = yolo_label_lines(det, image.shape[:2], args.save_conf)
        (save_dir / "labels").mkdir(exist_ok=True)
        (save_dir / "labels" / f"{path.stem}.txt").write_text("".join(f"{line}\n" for line in lines))
    if args.save_crop:
        for i, (cls, crop) in enumerate(box_crops(image, det)):
            folder = save_dir / "crops" / (names[cls] if 0 <= cls < len(names) else str(cls))
            folder.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / f"{path.stem}_{i}.jpg"), crop)


def report_detections(args: argparse.Namespace, save_dir: Path, detections: Iterable[tuple[Path, np.ndarray,
                      torch.Tensor]], names: list[str]) -> tuple[dict[str, list[dict]], list[dict]]:
    """Save each image's outputs and print its line; returns the JSON summary and the COCO records."""
    summary: dict[str, list[dict]] = {}
    coco: list[dict] = []
    for path, image, det in detections:
        save_outputs(args, save_dir, path, image, det, names)
        if args.save_json:
            coco.extend(coco_records(det, path, names))
        counts = Counter(names[int(c)] for c in det[:, 5].tolist())
        found = ", ".join(f"{n} {name}" for name, n in counts.items()) or "no detections"
        print(f"{path}: {image.shape[0]}x{image.shape[1]}: {found}")
        summary[str(path)] = [
            {"class": int(c), "name": names[int(c)], "score": round(s, 5), "box": [round(v, 1) for v in box]}
            for *box, s, c in det.tolist()
        ]
    return summary, coco


def run(args: argparse.Namespace) -> int:
    paths = image_paths(args.source)
    loaded = load_model(args.weights, device=args.device, fuse=True)
    model, names = loaded.model, loaded.names
    check_nms_free(model, args.nms_free)
    save_dir = run_dir(args)
    save_dir.mkdir(parents=True, exist_ok=True)
    with inference_state(model, half=False, channels_last=model_device(model).type == "cpu"):  # as val runs it
        detections = ((path, image, predict(model, [image], args.img, args.conf, args.iou, args.max_det, args.classes,
                                            args.agnostic_nms, args.nms_free)[0]) for path, image in read_images(paths))
        summary, coco = report_detections(args, save_dir, detections, names)
    if args.save_json:
        (save_dir / "predictions.json").write_text(json.dumps(coco))
    print(f"results saved to {save_dir}")
    if args.json:
        print_json({"save_dir": str(save_dir), "images": summary})
    return 0
