"""``yolo-attn val`` and :func:`evaluate`: mAP as YOLOv5's val.py computes it, plus COCOeval.

Rectangular batches (images sorted by aspect ratio, padded half a stride), multi-label NMS, boxes
mapped back to the original images, then YOLOv5's per-class P / R / mAP50 / mAP50-95 and
pycocotools' COCO metrics on the same predictions.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from yolo_attn.data.coco_json import detections_to_json, ground_truth_json
from yolo_attn.data.config import DatasetConfig, SplitSource, load_dataset_config
from yolo_attn.data.dataset import DetectionDataset, create_dataloader
from yolo_attn.engine.metrics import (
    COCO_BACKENDS,
    ClassMetrics,
    ConfusionMatrix,
    DetectionStats,
    coco_backend_classes,
    coco_evaluate,
)
from yolo_attn.errors import UserError
from yolo_attn.utils.boxes import scale_boxes, xywh2xyxy
from yolo_attn.utils.nms import non_max_suppression
from yolo_attn.utils.paths import add_run_dir_arguments, increment_path

LOGGER = logging.getLogger("yolo_attn.val")

RECT_PAD = 0.5  # strides added to each rectangular batch shape (YOLOv5 val)
JSON_KEYS = ("precision", "recall", "map50", "map50_95", "coco", "speed_ms", "images", "instances")
COCO_JSON_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100")
COCO_TABLE_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100")
ROW_FORMAT = "%22s" + "%11s" * 6
VALUE_FORMAT = "%22s" + "%11i" * 2 + "%11.3g" * 4

DataSource = DatasetConfig | SplitSource | str | Path | dict[str, Any]


def resolve_split(data: DataSource, split: str = "val") -> SplitSource:
    """The split to evaluate from a dataset YAML path, a parsed dict, a DatasetConfig or a SplitSource."""
    if isinstance(data, SplitSource):
        data.check_exists()
        return data
    config = data if isinstance(data, DatasetConfig) else load_dataset_config(data)
    return config.split(split)


def _model_stride(model: nn.Module) -> int:
    stride = getattr(model, "stride", None)
    return max(int(stride.max()) if isinstance(stride, torch.Tensor) else 32, 32)


def _device_of(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if len(x) else 0.0


def _coco_metrics(
    dataset: DetectionDataset, predictions: list[dict[str, Any]], save_dir: Path | None, backend: str
) -> dict[str, float]:
    """COCOeval of ``predictions`` against the split's own json (COCO layout) or one written from its labels."""
    split = dataset.split
    if split.layout == "coco":
        ground_truth: dict[str, Any] | Path = split.annotations
    else:
        ground_truth = ground_truth_json(
            dataset.image_ids,
            dataset.im_files,
            dataset.shapes,
            dataset.labels,
            split.class_to_category_id,
            list(split.names),
        )
        if save_dir is not None:
            (save_dir / "ground_truth.json").write_text(json.dumps(ground_truth))
    return coco_evaluate(ground_truth, predictions, dataset.image_ids, backend)


def _summary(
    metrics: ClassMetrics, stats: DetectionStats, names: list[str], timings: dict[str, float]
) -> dict[str, Any]:
    """The result dict's metric part: means over classes with labels (YOLOv5's), per-class rows, speeds."""
    maps = np.full(stats.nc, _mean(metrics.ap50_95))
    maps[metrics.classes] = metrics.ap50_95
    per_image = 1e3 / max(stats.images, 1)
    return {
        "precision": _mean(metrics.precision),
        "recall": _mean(metrics.recall),
        "map50": _mean(metrics.ap50),
        "map50_95": _mean(metrics.ap50_95),
        "coco": None,
        "speed_ms": {k: timings[k] * per_image for k in ("pre", "inference", "nms")},
        "images": stats.images,
        "instances": len(stats.target_classes),
        "coco_stats": None,
        "per_class": [
            {
                "class": int(c),
                "name": names[c],
                "images": int(stats.images_per_class[c]),
                "instances": int(n),
                "precision": float(p),
                "recall": float(r),
                "map50": float(a50),
                "map50_95": float(a),
            }
            for c, n, p, r, a50, a in zip(
                metrics.classes,
                metrics.instances,
                metrics.precision,
                metrics.recall,
                metrics.ap50,
                metrics.ap50_95,
                strict=True,
            )
        ],
        "maps": maps.tolist(),
    }


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: DataSource | None = None,
    *,
    img_size: int = 640,
    batch_size: int = 16,
    conf_thres: float = 0.001,
    iou_thres: float = 0.6,
    max_det: int = 300,
    device: str | torch.device | None = None,
    half: bool = False,
    workers: int = 8,
    save_dir: str | Path | None = None,
    plots: bool = False,
    coco: bool = True,
    coco_backend: str = "pycocotools",
    save_json: bool = False,
    dataloader: DataLoader | None = None,
    names: list[str] | None = None,
    verbose: bool = False,
    compute_loss: Callable[[Any, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
    split: str = "val",
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Evaluate ``model`` on a dataset split; returns the metrics dict that ``yolo-attn val --json`` prints.

    Keys: ``precision``, ``recall``, ``map50``, ``map50_95`` (YOLOv5's), ``coco`` (COCOeval AP, AP50,
    AP75, APs, APm, APl, AR100; None with ``coco=False``), ``speed_ms`` (pre / inference / nms per
    image), ``images``, ``instances``; also ``coco_stats`` (all 12 COCOeval numbers), ``per_class``
    rows, ``maps`` (mAP50-95 per class index, for class weighting), ``timings_s`` and, with
    ``compute_loss(raw_outputs, targets) -> (loss, loss_items)``, ``loss`` (mean loss_items).

    Training passes its own ``dataloader`` (a :func:`create_dataloader` over :class:`DetectionDataset`);
    otherwise ``data`` (plus ``split``) names the images and a rectangular-batch loader is built.
    ``device=None`` keeps the model where it is; the model's train/eval mode and dtype are restored.
    """
    if coco:
        coco_backend_classes(coco_backend)  # a missing optional backend fails before the long part
    start = time.perf_counter()
    timings = dict.fromkeys(("data", "load", "pre", "inference", "nms", "metrics", "coco", "plots"), 0.0)
    if device is None:
        device = _device_of(model)
    else:
        from yolo_attn.checkpoint import resolve_device

        device = resolve_device(device)
        model.to(device)
    if half and device.type != "cuda":
        LOGGER.warning("--half needs a CUDA device; evaluating in FP32")
        half = False
    stride = _model_stride(model)
    if dataloader is None:
        if data is None:
            raise ValueError("evaluate() needs data or a dataloader")
        source = resolve_split(data, split)
        if img_size % stride:
            rounded = math.ceil(img_size / stride) * stride
            LOGGER.warning(f"image size {img_size} is not a multiple of the stride {stride}; using {rounded}")
            img_size = rounded
        dataloader, _ = create_dataloader(
            source,
            img_size,
            batch_size,
            stride,
            rect=True,
            pad=RECT_PAD,
            workers=workers,
            prefix=f"{split}: ",
            cache_dir=cache_dir,
        )
    dataset: DetectionDataset = dataloader.dataset
    nc = dataset.split.nc
    model_nc = getattr(model, "nc", nc)
    if model_nc != nc:
        raise UserError(f"the model predicts {model_nc} classes but {dataset.split.origin} has {nc}")
    names = list(names or dataset.split.names)
    timings["data"] = time.perf_counter() - start

    was_training = model.training
    model.eval()
    if half:
        model.half()
    if device.type == "cuda":  # first CUDA call pays for kernel set-up; keep it out of the timings
        model(torch.zeros(1, 3, img_size, img_size, device=device, dtype=torch.half if half else torch.float))
    save_path = Path(save_dir) if save_dir is not None else None
    if save_path is not None:
        save_path.mkdir(parents=True, exist_ok=True)

    stats = DetectionStats(nc, ConfusionMatrix(nc) if plots else None)
    predictions: list[dict[str, Any]] = []
    class_to_category_id = dataset.split.class_to_category_id
    image_id_of = dict(zip(dataset.im_files, dataset.image_ids, strict=True))
    loss = None
    tick = time.perf_counter()
    for images, targets, paths, shapes in tqdm(
        dataloader, desc=f"{split}", unit="batch", disable=not progress, leave=False
    ):
        t0 = time.perf_counter()
        timings["load"] += t0 - tick
        images = images.to(device, non_blocking=True)
        images = (images.half() if half else images.float()) / 255
        targets = targets.to(device)
        height, width = images.shape[2:]
        t1 = time.perf_counter()
        output = model(images)
        decoded, raw = output if isinstance(output, tuple) else (output, None)
        t2 = time.perf_counter()
        if compute_loss is not None:
            items = compute_loss([x.float() for x in raw], targets)[1].detach()
            loss = items if loss is None else loss + items
        t3 = time.perf_counter()
        detections = non_max_suppression(decoded, conf_thres, iou_thres, multi_label=True, max_det=max_det)
        t4 = time.perf_counter()
        timings["pre"] += t1 - t0
        timings["inference"] += t2 - t1
        timings["nms"] += t4 - t3

        targets[:, 2:] *= torch.tensor((width, height, width, height), device=device)
        for si, det in enumerate(detections):
            labels = targets[targets[:, 0] == si, 1:]
            original_shape, ratio_pad = shapes[si]
            det = det.float()
            scale_boxes(images.shape[2:], det[:, :4], original_shape, ratio_pad)
            boxes = xywh2xyxy(labels[:, 1:5])
            scale_boxes(images.shape[2:], boxes, original_shape, ratio_pad)
            stats.update(det.cpu(), torch.cat((labels[:, :1], boxes), 1).float().cpu())
            if coco or save_json:
                predictions += detections_to_json(det.cpu().numpy(), image_id_of[paths[si]], class_to_category_id)
        timings["metrics"] += time.perf_counter() - t4
        tick = time.perf_counter()

    t0 = time.perf_counter()
    metrics = stats.compute()
    timings["metrics"] += time.perf_counter() - t0
    result = _summary(metrics, stats, names, timings)
    result["save_dir"] = str(save_path) if save_path is not None else None
    if compute_loss is not None and loss is not None:
        result["loss"] = (loss.cpu() / len(dataloader)).tolist()

    if save_json and save_path is not None:
        (save_path / "predictions.json").write_text(json.dumps(predictions))
    if coco:
        t0 = time.perf_counter()
        coco_stats = _coco_metrics(dataset, predictions, save_path if save_json else None, coco_backend)
        result["coco_stats"] = coco_stats
        result["coco"] = {k: coco_stats[k] for k in COCO_JSON_KEYS}
        timings["coco"] = time.perf_counter() - t0
    if plots and save_path is not None:
        from yolo_attn.engine.plots import plot_validation

        t0 = time.perf_counter()
        plot_validation(metrics, stats.confusion, names, save_path)
        timings["plots"] = time.perf_counter() - t0

    if half:
        model.float()
    model.train(was_training)
    timings["total"] = time.perf_counter() - start
    result["timings_s"] = timings
    if verbose:
        LOGGER.info(format_results(result, per_class=True))
    return result


def _table_row(name: str, row: dict[str, Any]) -> str:
    keys = ("images", "instances", "precision", "recall", "map50", "map50_95")
    return VALUE_FORMAT % (name[:22], *(row[k] for k in keys))


def format_results(result: dict[str, Any], per_class: bool = True) -> str:
    """The results table (all classes, then each class with labels), the COCO line and the speed line."""
    lines = [ROW_FORMAT % ("Class", "Images", "Instances", "P", "R", "mAP50", "mAP50-95"), _table_row("all", result)]
    if per_class:
        lines += [_table_row(row["name"], row) for row in result["per_class"]]
    if result.get("coco_stats"):
        lines.append("COCO bbox: " + "  ".join(f"{k} {result['coco_stats'][k]:.4f}" for k in COCO_TABLE_KEYS))
    speed = result["speed_ms"]
    lines.append(
        f"Speed: {speed['pre']:.1f}ms pre-process, {speed['inference']:.1f}ms inference, "
        f"{speed['nms']:.1f}ms NMS per image"
    )
    return "\n".join(lines)


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", required=True, help="checkpoint (ours or an upstream YOLOv5/YOLOv7 .pt)")
    p.add_argument("--data", required=True, help="dataset YAML (YOLO or COCO layout)")
    p.add_argument("--split", default="val", choices=("train", "val", "test"), help="split to evaluate")
    p.add_argument("--img", "--imgsz", type=int, default=640, help="inference size (long side, pixels)")
    p.add_argument("--batch", "--batch-size", type=int, default=16, help="batch size")
    p.add_argument("--conf", "--conf-thres", type=float, default=0.001, help="confidence threshold")
    p.add_argument("--iou", "--iou-thres", type=float, default=0.6, help="NMS IoU threshold")
    p.add_argument("--max-det", type=int, default=300, help="maximum detections per image")
    p.add_argument("--device", default="cpu", help="cpu, or a CUDA device index such as 0")
    p.add_argument("--workers", type=int, default=8, help="dataloader workers (at most the CPU count)")
    p.add_argument("--half", action="store_true", help="FP16 inference (CUDA only)")
    p.add_argument("--save-json", action="store_true", help="write COCO-format predictions.json to the run folder")
    p.add_argument("--no-plots", action="store_true", help="skip the PR / F1 / confusion-matrix plots")
    p.add_argument("--no-coco", action="store_true", help="skip the COCO (pycocotools) evaluation")
    p.add_argument(
        "--coco-backend",
        default="pycocotools",
        choices=tuple(COCO_BACKENDS),
        help="COCOeval implementation; 'faster' = faster-coco-eval (optional install, same numbers)",
    )
    add_run_dir_arguments(p, "runs/val")
    p.add_argument("--json", action="store_true", help="end with one JSON line of the metrics")


def run_cli(args: argparse.Namespace) -> int:
    from yolo_attn.checkpoint import load_model

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    source = resolve_split(args.data, args.split)  # a missing dataset fails before the weights load
    loaded = load_model(args.weights, device=args.device, fuse=True)
    save_dir = increment_path(Path(args.project) / args.name, args.exist_ok)
    result = evaluate(
        loaded.model,
        source,
        split=args.split,
        img_size=args.img,
        batch_size=args.batch,
        conf_thres=args.conf,
        iou_thres=args.iou,
        max_det=args.max_det,
        device=args.device,
        half=args.half,
        workers=args.workers,
        save_dir=save_dir,
        plots=not args.no_plots,
        coco=not args.no_coco,
        coco_backend=args.coco_backend,
        save_json=args.save_json,
        progress=True,
    )
    print(format_results(result))
    print(f"Results saved to {save_dir}")
    if args.json:
        print(json.dumps({k: result[k] for k in JSON_KEYS}))
    return 0
