"""Time ``yolo-attn val`` stage by stage: label scan, pre-process, inference, NMS, metrics, COCO eval, wall.

    python scripts/bench_val.py --weights ../shared/weights/yolov5n-v6.1.pt --data ../shared/data/coco128/coco128.yaml

Process settings as ``yolo-attn`` makes them; ``scripts/bench_compare.py`` times the command itself against
YOLOv5's ``val.py``. The label scan is timed cold (empty cache) and warm.
"""

from __future__ import annotations

import time

PROCESS_START = time.perf_counter()

import argparse
import json
import tempfile

import torch

from yolo_attn.checkpoint import load_model
from yolo_attn.data.dataset import scan_split
from yolo_attn.engine.validator import evaluate, resolve_split
from yolo_attn.metrics import COCO_BACKENDS


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--img", type=int, default=640)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--device", default="cpu")
    p.add_argument("--coco-backend", default="auto", choices=("auto", *COCO_BACKENDS))
    p.add_argument("--plots", action="store_true", help="also time the plots")
    args = p.parse_args()

    imports = time.perf_counter() - PROCESS_START
    loaded, load_s = _timed(load_model, args.weights, device=args.device, fuse=True)
    split = resolve_split(args.data)
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as save_dir:
        _, scan_cold = _timed(scan_split, split, cache)
        _, scan_warm = _timed(scan_split, split, cache)
        result = evaluate(
            loaded.model,
            split,
            img_size=args.img,
            batch_size=args.batch,
            workers=args.workers,
            device=args.device,
            cache_dir=cache,
            plots=args.plots,
            save_dir=save_dir,
            coco_backend=args.coco_backend,
        )
    t = result["timings_s"]
    images = result["images"]
    wall = time.perf_counter() - PROCESS_START
    rows = [
        ("imports", imports),
        ("load weights", load_s),
        ("label scan, cold", scan_cold),
        ("label scan, warm", scan_warm),
        ("dataloader set-up", t["data"]),
        ("waiting for batches", t["load"]),
        ("pre-process", t["pre"]),
        ("inference", t["inference"]),
        ("NMS", t["nms"]),
        ("metrics (matching, AP)", t["metrics"]),
        (f"COCO eval ({args.coco_backend})", t["coco"]),
        ("plots", t["plots"]),
        ("evaluate() total", t["total"]),
        ("process wall", wall),
    ]
    print(
        f"{images} images, img {args.img}, batch {args.batch}, device {args.device}, "
        f"{torch.get_num_threads()} torch threads"
    )
    for name, seconds in rows:
        print(f"{name:>26s} {seconds:8.2f} s {seconds / images * 1e3:9.1f} ms/img")
    print(f"mAP50 {result['map50']:.4f}  mAP50-95 {result['map50_95']:.4f}  COCO AP {result['coco']['AP']:.4f}")
    print(json.dumps({"images": images, "wall_s": wall, **{name: seconds for name, seconds in rows}}))


if __name__ == "__main__":
    main()
