"""Evaluation: mAP as YOLOv5's ``val.py`` computes it, plus COCOeval on the same predictions.

Rectangular batches (images sorted by aspect ratio, padded half a stride), multi-label NMS (none for an
end-to-end head asked for its NMS-free top-k output, ``nms_free``), boxes mapped back to the original images, then
YOLOv5's per-class P / R / mAP50 / mAP50-95 and COCOeval's COCO metrics. :func:`evaluate` runs the steps:
:func:`build_eval_loader`, :func:`run_inference` (inside :func:`inference_state`), statistics,
:func:`coco_metrics`, reporting.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from yolo_attn.data.coco_json import detections_to_json, evaluable_ground_truth, ground_truth_json
from yolo_attn.data.config import DatasetConfig, SplitSource, load_dataset_config
from yolo_attn.data.dataset import DetectionDataset, create_dataloader
from yolo_attn.engine.options import BATCH_FLAGS, CONF_FLAGS, IMG_FLAGS, IOU_FLAGS, NON_NEGATIVE, POSITIVE, UNIT, option
from yolo_attn.errors import UserError
from yolo_attn.metrics import (
    COCO_BACKENDS,
    ClassMetrics,
    ConfusionMatrix,
    DetectionStats,
    coco_backend_classes,
    coco_evaluate,
)
from yolo_attn.nn.heads import check_nms_free, configure_end_to_end, has_objectness
from yolo_attn.nn.model import DetectionModel, max_stride, model_device, try_channels_last
from yolo_attn.utils.boxes import scale_boxes, xywh2xyxy
from yolo_attn.utils.cpu_share import ThreadGovernor
from yolo_attn.utils.device import select_device
from yolo_attn.utils.nms import end_to_end_detections, non_max_suppression
from yolo_attn.utils.runtime import start_in_children

LOGGER = logging.getLogger(__name__)

RECT_PAD = 0.5  # strides added to each rectangular batch shape (YOLOv5 val)
JSON_KEYS = ("precision", "recall", "map50", "map50_95", "coco", "speed_ms", "images", "instances")
COCO_JSON_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100")
COCO_TABLE_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100")
ROW_FORMAT = "%22s" + "%11s" * 6
VALUE_FORMAT = "%22s" + "%11i" * 2 + "%11.3g" * 4
TABLE_HEADER = ROW_FORMAT % ("Class", "Images", "Instances", "P", "R", "mAP50", "mAP50-95")
PLOTTED_BATCHES = 3  # with plots: val_batch{0,1,2}_labels.jpg and _pred.jpg (YOLOv5's)
PLOT_CONF = 0.25  # detections drawn in val_batch*_pred.jpg (YOLOv5's)
TIMING_KEYS = ("data", "load", "pre", "inference", "nms", "metrics", "coco", "plots")
# On CPU our detection models take batches this many images at a time (same outputs): a 640-px yolov5n chunk's
# tensors stay under glibc's 32 MiB mmap threshold, so their memory is reused instead of faulted in anew
# (a batch of 16 spends ~0.7 s of system time zeroing fresh pages) and the peak memory is lower.
CPU_CHUNK = 4

DataSource = DatasetConfig | SplitSource | str | Path | dict[str, Any]
LossFunction = Callable[[Any, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class EvalConfig:
    """How to evaluate. ``img_size``, ``batch_size``, ``workers``, ``split`` and ``cache_dir`` shape the loader
    built from ``data``; a loader handed to :func:`evaluate` is used as it is. ``device=None`` keeps the model
    where it is."""

    img_size: int = option(640, "inference size (long side, pixels)", flags=IMG_FLAGS, bounds=POSITIVE)
    batch_size: int = option(16, "batch size", flags=BATCH_FLAGS, bounds=POSITIVE)
    workers: int = option(8, "dataloader workers (at most the CPU count)", bounds=NON_NEGATIVE)
    split: str = option("val", "split to evaluate", choices=("train", "val", "test"))
    cache_dir: str | Path | None = None
    conf_thres: float = option(0.001, "confidence threshold", flags=CONF_FLAGS, bounds=UNIT)
    iou_thres: float = option(0.6, "NMS IoU threshold", flags=IOU_FLAGS, bounds=UNIT)
    max_det: int = option(300, "maximum detections per image", bounds=POSITIVE)
    nms_free: bool = option(False, "an end-to-end head's (YOLOv10, YOLO26) one-to-one detections without NMS "
                            "(Ultralytics' nms=False; default: the one-to-many branch and NMS)")
    device: str | torch.device | None = None
    half: bool = option(False, "FP16 inference (CUDA only)")
    save_dir: str | Path | None = None
    plots: bool = False
    coco: bool = True
    coco_backend: str = option("auto", "COCOeval implementation; auto = faster-coco-eval (same numbers) if importable, "
                               "else pycocotools (the reference)", choices=("auto", *COCO_BACKENDS))
    save_json: bool = option(False, "write COCO-format predictions.json to the run folder")
    progress: bool = False
    verbose: bool = False


@dataclass
class InferenceOutput:
    """What the inference loop gathers: statistics, COCO-format predictions, the summed loss and timings."""

    stats: DetectionStats
    predictions: list[dict[str, Any]] = field(default_factory=list)
    loss: torch.Tensor | None = None
    timings: dict[str, float] = field(default_factory=lambda: dict.fromkeys(TIMING_KEYS, 0.0))


def resolve_split(data: DataSource, split: str = "val") -> SplitSource:
    """The split to evaluate from a dataset YAML path, a parsed dict, a DatasetConfig or a SplitSource."""
    if isinstance(data, SplitSource):
        data.check_exists()
        return data
    config = data if isinstance(data, DatasetConfig) else load_dataset_config(data)
    return config.split(split)


def build_eval_loader(data: DataSource, stride: int, config: EvalConfig):
    """The rectangular-batch loader of ``config.split`` at ``img_size`` rounded up to ``stride``."""
    source = resolve_split(data, config.split)
    img_size = config.img_size
    if img_size % stride:
        img_size = math.ceil(img_size / stride) * stride
        LOGGER.warning(f"image size {config.img_size} is not a multiple of the stride {stride}; using {img_size}")
    dataset = DetectionDataset(source, img_size, config.batch_size, rect=True, stride=stride, pad=RECT_PAD,
                               prefix=f"{config.split}: ", cache_dir=config.cache_dir)
    return create_dataloader(dataset, config.batch_size, workers=config.workers)


def _cpu_fast_path(model: nn.Module, device: torch.device) -> bool:
    """Our detection models on CPU: batches in chunks of :data:`CPU_CHUNK` images, NHWC where the blocks allow."""
    return device.type == "cpu" and isinstance(model, DetectionModel)


@contextlib.contextmanager
def inference_state(model: nn.Module, half: bool, channels_last: bool = False) -> Iterator[bool]:
    """Eval mode (and FP16 with ``half``; channels-last weights if asked and possible) for the duration; yields
    whether the model runs channels-last. The model's mode, dtype and memory format are restored after."""
    was_training = model.training
    model.eval()
    if half:
        model.half()
    with torch.no_grad():
        channels_last = channels_last and try_channels_last(model)
    try:
        yield channels_last
    finally:
        if channels_last:
            model.to(memory_format=torch.contiguous_format)
        if half:
            model.float()
        model.train(was_training)


def _record_batch(output: InferenceOutput, detections, targets, images, paths, shapes, image_id_of, category_ids,
                  keep_predictions: bool) -> None:
    """Match one batch's detections to its labels (both in original pixels) and keep its COCO predictions."""
    height, width = images.shape[2:]
    targets[:, 2:] *= torch.tensor((width, height, width, height), device=targets.device)
    for si, det in enumerate(detections):
        labels = targets[targets[:, 0] == si, 1:]
        original_shape, ratio_pad = shapes[si]
        det = det.float()
        scale_boxes(images.shape[2:], det[:, :4], original_shape, ratio_pad)
        boxes = xywh2xyxy(labels[:, 1:5])
        scale_boxes(images.shape[2:], boxes, original_shape, ratio_pad)
        output.stats.update(det.cpu(), torch.cat((labels[:, :1], boxes), 1).float().cpu())
        if keep_predictions:
            output.predictions += detections_to_json(det.cpu().numpy(), image_id_of[paths[si]], category_ids)


def _cat_raw(parts: list[Any]) -> Any:
    """Raw head outputs of a batch from those of its chunks (a tensor, a list of per-level tensors, or a dict of
    such lists: an end-to-end head's branches)."""
    if isinstance(parts[0], Mapping):
        return {key: _cat_raw([part[key] for part in parts]) for key in parts[0]}
    if isinstance(parts[0], torch.Tensor):
        return torch.cat(parts)
    return [torch.cat(level) for level in zip(*parts, strict=True)]


def _float_raw(raw: Any) -> Any:
    """``raw`` (as :func:`_cat_raw` returns it) as a float32 list, or a dict of such lists, for the loss."""
    if isinstance(raw, Mapping):
        return {key: _float_raw(value) for key, value in raw.items()}
    return [x.float() for x in raw]


def _forward(model: nn.Module, images: torch.Tensor, config: EvalConfig, device: torch.device, chunk: int,
             channels_last: bool, keep_raw: bool, timings: dict[str, float]) -> tuple[list[torch.Tensor], Any]:
    """The model on ``images`` (uint8) ``chunk`` images at a time: decoded outputs per chunk, and the batch's raw
    outputs with ``keep_raw``; pre-processing and inference times added to ``timings``."""
    decoded, raw = [], []
    for part in images.split(chunk):
        t0 = time.perf_counter()
        part = part.to(device, non_blocking=True).to(torch.half if config.half else torch.float).div_(255)
        if channels_last:
            part = part.contiguous(memory_format=torch.channels_last)
        t1 = time.perf_counter()
        result = model(part)
        decoded.append(result[0] if isinstance(result, tuple) else result)
        if keep_raw:
            raw.append(result[1])
        timings["pre"] += t1 - t0
        timings["inference"] += time.perf_counter() - t1
    return decoded, _cat_raw(raw) if keep_raw else None


def plot_val_batch(index: int, images: torch.Tensor, targets: torch.Tensor, detections: list[torch.Tensor],
                   names: list[str], save_dir: Path) -> None:
    """``val_batch{index}_labels.jpg`` and ``val_batch{index}_pred.jpg``: a batch's labels and its detections
    (score at least :data:`PLOT_CONF`) on the letterboxed images."""
    from yolo_attn.engine.results import label_boxes, plot_batch

    height, width = images.shape[2:]
    labels = label_boxes(targets, len(images), height, width)
    predictions = [det[det[:, 4] >= PLOT_CONF].float().cpu().numpy() for det in detections]
    plot_batch(images, labels, names, save_dir / f"val_batch{index}_labels.jpg")
    plot_batch(images, predictions, names, save_dir / f"val_batch{index}_pred.jpg", scores=True)


@torch.no_grad()
def run_inference(model: nn.Module, loader, config: EvalConfig, device: torch.device, output: InferenceOutput,
                  compute_loss: LossFunction | None = None, chunk: int | None = None,
                  channels_last: bool = False, threads: ThreadGovernor | None = None) -> None:
    """Forward every batch (``chunk`` images at a time, NHWC with ``channels_last``), NMS, and record
    statistics (and loss); with ``plots`` and a ``save_dir``, draw the first batches (:func:`plot_val_batch`).
    ``threads`` fits the CPU team to the free cores between batches."""
    dataset: DetectionDataset = loader.dataset
    image_id_of = dict(zip(dataset.im_files, dataset.image_ids, strict=True))
    keep_predictions = config.coco or config.save_json
    objectness = has_objectness(model)
    end_to_end = configure_end_to_end(model, config.max_det, nms_free=config.nms_free)  # final output: no NMS
    timings, tick = output.timings, time.perf_counter()
    plot_dir = Path(config.save_dir) if config.plots and config.save_dir is not None else None
    batches = tqdm(loader, desc=TABLE_HEADER, unit="batch", disable=not config.progress, leave=False)
    for index, (images, targets, paths, shapes) in enumerate(batches):
        timings["load"] += time.perf_counter() - tick
        targets = targets.to(device)
        decoded, raw = _forward(model, images, config, device, chunk or len(images), channels_last,
                                compute_loss is not None, timings)
        if compute_loss is not None:
            items = compute_loss(_float_raw(raw), targets)[1].detach()
            output.loss = items if output.loss is None else output.loss + items
        t0 = time.perf_counter()
        detections = [det for part in decoded for det in (
            end_to_end_detections(part, config.conf_thres, max_det=config.max_det) if end_to_end else
            non_max_suppression(part, config.conf_thres, config.iou_thres, multi_label=True, max_det=config.max_det,
                                objectness=objectness))]
        t1 = time.perf_counter()
        if plot_dir is not None and index < PLOTTED_BATCHES:  # before _record_batch rescales boxes in place
            plot_val_batch(index, images, targets, detections, list(dataset.split.names), plot_dir)
        _record_batch(output, detections, targets, images, paths, shapes, image_id_of,
                      dataset.split.class_to_category_id, keep_predictions)
        timings["nms"] += t1 - t0
        timings["metrics"] += time.perf_counter() - t1
        if threads is not None:
            threads.update()
        tick = time.perf_counter()


def coco_metrics(dataset: DetectionDataset, predictions: list[dict[str, Any]], save_dir: Path | None,
                 backend: str) -> dict[str, float]:
    """COCOeval of ``predictions`` against the split's own json (COCO layout) or one written from its labels."""
    split = dataset.split
    if split.layout == "coco":
        assert split.annotations is not None  # the COCO layout's json
        ground_truth: dict[str, Any] | Path = evaluable_ground_truth(split.annotations)
    else:
        ground_truth = ground_truth_json(dataset.image_ids, dataset.im_files, dataset.shapes, dataset.labels,
                                         split.class_to_category_id, list(split.names))
        if save_dir is not None:
            (save_dir / "ground_truth.json").write_text(json.dumps(ground_truth))
    return coco_evaluate(ground_truth, predictions, dataset.image_ids, backend)


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if len(x) else 0.0


def summarize(metrics: ClassMetrics, stats: DetectionStats, names: list[str], timings: dict[str, float]) -> dict:
    """The result dict's metric part: means over classes with labels (YOLOv5's), per-class rows, speeds."""
    maps = np.full(stats.nc, _mean(metrics.ap50_95))
    maps[metrics.classes] = metrics.ap50_95
    per_image = 1e3 / max(stats.images, 1)
    columns = zip(metrics.classes, metrics.instances, metrics.precision, metrics.recall, metrics.ap50,
                  metrics.ap50_95, strict=True)
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
            {"class": int(c), "name": names[c], "images": int(stats.images_per_class[c]), "instances": int(n),
             "precision": float(p), "recall": float(r), "map50": float(a50), "map50_95": float(a)}
            for c, n, p, r, a50, a in columns
        ],
        "maps": maps.tolist(),
    }


def _prepare(model: nn.Module, data: DataSource | None, dataloader, config: EvalConfig):
    """(device, half, loader) after moving the model and checking its classes against the data."""
    if config.coco:
        coco_backend_classes(config.coco_backend)  # a missing optional backend fails before the long part
    device = model_device(model) if config.device is None else select_device(config.device)
    model.to(device)
    half = config.half
    if half and device.type != "cuda":
        LOGGER.warning("--half needs a CUDA device; evaluating in FP32")
        half = False
    if dataloader is None:
        if data is None:
            raise ValueError("evaluate() needs data or a dataloader")
        dataloader = build_eval_loader(data, max_stride(model), config)
    nc = dataloader.dataset.split.nc
    if getattr(model, "nc", nc) != nc:
        raise UserError(f"the model predicts {model.nc} classes but {dataloader.dataset.split.origin} has {nc}")
    return device, half, dataloader


def _report(result: dict[str, Any], output: InferenceOutput, dataset: DetectionDataset, metrics: ClassMetrics,
            names: list[str], config: EvalConfig) -> None:
    """Write predictions.json, add the COCO metrics, draw the plots (beside the COCO evaluation, in child
    processes; each timed into ``output.timings``)."""
    save_path = Path(config.save_dir) if config.save_dir is not None else None
    plots_done = None
    if config.plots and save_path is not None:
        from yolo_attn.engine.plots import validation_plot_calls

        plots_done = start_in_children(validation_plot_calls(metrics, output.stats.confusion, names, save_path))
    if config.save_json and save_path is not None:
        (save_path / "predictions.json").write_text(json.dumps(output.predictions))
    if config.coco:
        t0 = time.perf_counter()
        coco_stats = coco_metrics(dataset, output.predictions, save_path if config.save_json else None,
                                  config.coco_backend)
        result["coco_stats"] = coco_stats
        result["coco"] = {k: coco_stats[k] for k in COCO_JSON_KEYS}
        output.timings["coco"] = time.perf_counter() - t0
    if plots_done is not None:
        t0 = time.perf_counter()
        plots_done()
        output.timings["plots"] = time.perf_counter() - t0


def evaluate(model: nn.Module, data: DataSource | None = None, config: EvalConfig | None = None, *, dataloader=None,
             names: list[str] | None = None, compute_loss: LossFunction | None = None,
             stats: DetectionStats | None = None, **options: Any) -> dict:
    """Evaluate ``model`` on a dataset split; returns the metrics dict that ``yolo-attn val --json`` prints.

    ``options`` override fields of ``config`` (an :class:`EvalConfig`). Keys: ``precision``, ``recall``,
    ``map50``, ``map50_95`` (YOLOv5's), ``coco`` (COCOeval AP, AP50, AP75, APs, APm, APl, AR100; None with
    ``coco=False``), ``speed_ms`` (pre / inference / nms per image), ``images``, ``instances``; also
    ``coco_stats`` (all 12 COCOeval numbers), ``per_class`` rows, ``maps`` (mAP50-95 per class index),
    ``timings_s`` and, with ``compute_loss(raw_outputs, targets) -> (loss, loss_items)``, ``loss``.
    Training passes its own ``dataloader``; otherwise ``data`` (plus ``split``) names the images. ``stats``: an
    empty :class:`~yolo_attn.metrics.DetectionStats` of the split's classes to record into, for a caller that reads
    the per-image statistics afterwards (an ablation's bootstrap over images).
    """
    config = dataclasses.replace(config or EvalConfig(), **options)
    check_nms_free(model, config.nms_free)
    start = time.perf_counter()
    device, half, dataloader = _prepare(model, data, dataloader, config)
    config = dataclasses.replace(config, half=half)
    dataset: DetectionDataset = dataloader.dataset
    names = list(names or dataset.split.names)
    if stats is None:
        stats = DetectionStats(dataset.split.nc, ConfusionMatrix(dataset.split.nc) if config.plots else None)
    output = InferenceOutput(stats)
    output.timings["data"] = time.perf_counter() - start
    if config.save_dir is not None:
        Path(config.save_dir).mkdir(parents=True, exist_ok=True)
    fast = _cpu_fast_path(model, device)
    with inference_state(model, half, channels_last=fast) as channels_last, \
            ThreadGovernor(device.type == "cpu") as threads:
        if device.type == "cuda":  # the first CUDA call pays for kernel set-up; keep it out of the timings
            model(torch.zeros(1, 3, 64, 64, device=device, dtype=torch.half if half else torch.float))
        run_inference(model, dataloader, config, device, output, compute_loss, CPU_CHUNK if fast else None,
                      channels_last, threads)
    t0 = time.perf_counter()
    metrics = output.stats.compute()
    output.timings["metrics"] += time.perf_counter() - t0
    result = summarize(metrics, output.stats, names, output.timings)
    result["save_dir"] = str(config.save_dir) if config.save_dir is not None else None
    if output.loss is not None:
        result["loss"] = (output.loss.cpu() / len(dataloader)).tolist()
    _report(result, output, dataset, metrics, names, config)
    output.timings["total"] = time.perf_counter() - start
    result["timings_s"] = output.timings
    if config.verbose:
        LOGGER.info(format_results(result, per_class=True))
    return result


def table_row(name: str, row: dict[str, Any]) -> str:
    """One line of the results table under :data:`TABLE_HEADER`."""
    keys = ("images", "instances", "precision", "recall", "map50", "map50_95")
    return VALUE_FORMAT % (name[:22], *(row[k] for k in keys))


def format_results(result: dict[str, Any], per_class: bool = True) -> str:
    """The results table (all classes, then each class with labels), the COCO line and the speed line."""
    lines = [TABLE_HEADER, table_row("all", result)]
    if per_class:
        lines += [table_row(row["name"], row) for row in result["per_class"]]
    if result.get("coco_stats"):
        lines.append("COCO bbox: " + "  ".join(f"{k} {result['coco_stats'][k]:.4f}" for k in COCO_TABLE_KEYS))
    speed = result["speed_ms"]
    lines.append(
        f"Speed: {speed['pre']:.1f}ms pre-process, {speed['inference']:.1f}ms inference, "
        f"{speed['nms']:.1f}ms NMS per image"
    )
    return "\n".join(lines)
