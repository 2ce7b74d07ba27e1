"""Training records: ``results.csv`` (one row per epoch, epochs counted from 1 as in the log and the progress bars),
``results.png``, the progress columns, label statistics and batch mosaics."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from yolo_attn.utils.annotate import draw_detections
from yolo_attn.utils.boxes import xywh2xyxy

RESULTS_CSV = "results.csv"
# summary key -> results.csv column (YOLOv5's names)
METRIC_COLUMNS = {
    "precision": "metrics/precision", "recall": "metrics/recall",
    "map50": "metrics/mAP_0.5", "map50_95": "metrics/mAP_0.5:0.95",
}
MOSAIC_MAX_IMAGES = 16
MOSAIC_MAX_SIDE = 1920  # px, the longer side of a batch mosaic (YOLOv5's)
WHITE = (255, 255, 255)


def epoch_row(epoch: int, losses: list[float], metrics: dict, lrs: list[float],
              loss_names: tuple[str, ...], skipped_steps: int = 0) -> dict[str, float]:
    """One epoch of results.csv (``epoch`` counts from 1): train losses, validation metrics and losses, learning
    rates, and the optimizer steps skipped for a non-finite loss or gradient."""
    val_losses = metrics.get("loss")
    val_losses = [float(v) for v in val_losses] if val_losses is not None else [0.0] * len(loss_names)
    row: dict[str, float] = {"epoch": epoch}
    row.update({f"train/{name}_loss": value for name, value in zip(loss_names, losses, strict=True)})
    row.update({column: float(metrics.get(key, 0.0)) for key, column in METRIC_COLUMNS.items()})
    # the validation loss (the head's eval loss) may name fewer items than the training loss chosen by --loss
    row.update({f"val/{name}_loss": value for name, value in zip(loss_names, val_losses, strict=False)})
    row.update({f"x/lr{i}": lr for i, lr in enumerate(lrs)})
    row["train/skipped_steps"] = skipped_steps
    return row


def final_metrics(path: Path) -> tuple[dict[str, float], int]:
    """The last epoch's metrics (summary keys) of a results.csv and its number of epochs."""
    rows = read_results(path)
    last = {k.strip(): v for k, v in rows[-1].items()}
    return {key: float(last[column]) for key, column in METRIC_COLUMNS.items()}, len(rows)


def append_results_row(path: Path, row: dict[str, float]) -> None:
    """Append one epoch's row, writing the header when the file is new."""
    new = not path.is_file()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()})


def read_results(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def truncate_results(path: Path, completed_epochs: int) -> None:
    """Keep the rows of the first ``completed_epochs`` epochs (epochs count from 1); drop later ones, left by a run
    killed after logging but before saving."""
    rows = read_results(path)
    kept = [r for r in rows if int(r["epoch"]) <= completed_epochs]
    if len(kept) == len(rows):
        return
    with path.open("w", newline="") as f:
        if rows:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(kept)


def progress_header(loss_names: Sequence[str]) -> str:
    """The titles of the training progress columns (YOLOv5's): Epoch, GPU_mem, one per loss, Instances, Size."""
    titles = ("Epoch", "GPU_mem", *(f"{name}_loss" for name in loss_names), "Instances", "Size")
    return ("%11s" * len(titles)) % titles


def progress_columns(epoch: int, epochs: int, memory_gb: float, losses: Sequence[float], instances: int,
                     size: int) -> str:
    """One line under :func:`progress_header`: ``epoch/epochs`` (from 1), memory, mean losses, boxes, image size."""
    return ("%11s" * 2 + "%11.4g" * (len(losses) + 2)) % (f"{epoch}/{epochs}", f"{memory_gb:.3g}G", *losses,
                                                          instances, size)


def results_figure(rows: Sequence[dict[str, str]]) -> Figure:
    """One panel per column of ``results.csv`` rows against the epoch (whole numbers, from 1), five to a row."""
    columns = [k for k in rows[0] if k != "epoch"]
    epochs = [int(r["epoch"]) for r in rows]
    ncols = 5
    nrows = math.ceil(len(columns) / ncols)
    fig = Figure(figsize=(3.2 * ncols, 2.7 * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, column in zip(axes[:len(columns)], columns, strict=True):
        ax.plot(epochs, [float(r[column]) for r in rows], marker=".")
        ax.set_title(column, fontsize=10)
        ax.set_xlabel("epoch", fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.ticklabel_format(axis="y", style="plain", useOffset=False)  # no "1e-5" or "+3.7e-2" over the title
        ax.tick_params(labelsize=8)
    for ax in axes[len(columns):]:
        ax.axis("off")
    return fig


def plot_results(csv_path: Path) -> Path | None:
    """:func:`results_figure` of ``results.csv``, saved beside it as results.png (None when it has no rows)."""
    rows = read_results(csv_path)
    if not rows:
        return None
    out = csv_path.with_name("results.png")
    results_figure(rows).savefig(out, dpi=100)
    return out


def plot_labels(labels: list[np.ndarray], names: list[str], path: Path) -> None:
    """Class histogram, box centres and box sizes of a dataset's (cls, cx, cy, w, h) labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    all_labels = np.concatenate([np.asarray(lb).reshape(-1, 5) for lb in labels], 0) if labels else np.zeros((0, 5))
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    counts = np.bincount(all_labels[:, 0].astype(int), minlength=len(names))
    axes[0].bar(range(len(counts)), counts)
    axes[0].set_title(f"instances per class ({len(all_labels)} boxes)")
    if len(names) <= 30:
        axes[0].set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    axes[1].hist2d(all_labels[:, 1], all_labels[:, 2], bins=50, range=[[0, 1], [0, 1]], cmap="Blues")
    axes[1].set_title("box centre (x, y)")
    axes[2].hist2d(all_labels[:, 3], all_labels[:, 4], bins=50, range=[[0, 1], [0, 1]], cmap="Blues")
    axes[2].set_title("box size (w, h)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def label_boxes(targets: torch.Tensor, n_images: int, height: int, width: int) -> list[np.ndarray]:
    """A loader's ``(image, class, cx, cy, w, h)`` targets (normalised) as :func:`plot_batch` boxes: per image, rows
    ``(x1, y1, x2, y2, 1, class)`` in pixels."""
    targets = targets.detach().cpu().float().reshape(-1, 6)
    boxes = torch.as_tensor(xywh2xyxy(targets[:, 2:6])) * torch.tensor([width, height, width, height])
    rows = torch.cat((boxes, torch.ones(len(targets), 1), targets[:, 1:2]), 1)
    return [rows[targets[:, 0] == i].numpy() for i in range(n_images)]


def plot_batch(images: torch.Tensor, boxes: Sequence[np.ndarray], names: Sequence[str], path: Path,
               scores: bool = False) -> np.ndarray:
    """A mosaic of a batch's first 16 images (uint8 or 0-1 float, RGB CHW), each with its boxes (rows ``(x1, y1, x2,
    y2, score, class)`` in its pixels) labelled by class name (and score with ``scores``). Tiles shrink until the
    longer side is at most 1920 px (YOLOv5's limit); labels are drawn after, at a size legible on a tile. Written
    to ``path``; returns the mosaic (RGB, HWC)."""
    unit_range = images.is_floating_point()  # 0-1 floats (training batches) or uint8 (validation batches)
    images = images[:MOSAIC_MAX_IMAGES].detach().cpu().float() * (255 if unit_range else 1)
    n, _, h, w = images.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    scale = min(1.0, MOSAIC_MAX_SIDE / max(rows * h, cols * w))
    tile_h, tile_w = round(h * scale), round(w * scale)
    canvas = np.full((rows * tile_h, cols * tile_w, 3), 255, dtype=np.uint8)
    for i in range(n):
        tile: np.ndarray = np.ascontiguousarray(images[i].permute(1, 2, 0).numpy()[..., ::-1].astype(np.uint8))
        if scale < 1:
            tile = cv2.resize(tile, (tile_w, tile_h), interpolation=cv2.INTER_AREA)
        detections = np.array(boxes[i], dtype=np.float32).reshape(-1, 6)
        detections[:, :4] *= scale
        r, c = divmod(i, cols)
        canvas[r * tile_h:(r + 1) * tile_h, c * tile_w:(c + 1) * tile_w] = draw_detections(
            tile, detections, names, hide_conf=not scores)
        cv2.rectangle(canvas, (c * tile_w, r * tile_h), ((c + 1) * tile_w - 1, (r + 1) * tile_h - 1), WHITE, 2)
    cv2.imwrite(str(path), canvas)
    return canvas[..., ::-1]
