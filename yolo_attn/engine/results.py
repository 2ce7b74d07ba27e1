"""Training records: ``results.csv`` (one row per epoch), ``results.png``, label statistics and batch mosaics."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import cv2
import numpy as np
import torch

from yolo_attn.utils.boxes import xywh2xyxy

RESULTS_CSV = "results.csv"
# summary key -> results.csv column (YOLOv5's names)
METRIC_COLUMNS = {
    "precision": "metrics/precision", "recall": "metrics/recall",
    "map50": "metrics/mAP_0.5", "map50_95": "metrics/mAP_0.5:0.95",
}


def epoch_row(epoch: int, losses: list[float], metrics: dict, lrs: list[float],
              loss_names: tuple[str, ...], skipped_steps: int = 0) -> dict[str, float]:
    """One epoch of results.csv: train losses, validation metrics and losses, learning rates, and the optimizer
    steps skipped for a non-finite loss or gradient."""
    val_losses = metrics.get("loss")
    val_losses = [float(v) for v in val_losses] if val_losses is not None else [0.0] * len(loss_names)
    row: dict[str, float] = {"epoch": epoch}
    row.update({f"train/{name}_loss": value for name, value in zip(loss_names, losses)})
    row.update({column: float(metrics.get(key, 0.0)) for key, column in METRIC_COLUMNS.items()})
    row.update({f"val/{name}_loss": value for name, value in zip(loss_names, val_losses)})
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


def truncate_results(path: Path, first_epoch: int) -> None:
    """Drop rows of epochs >= ``first_epoch`` (left by a run killed after logging but before saving)."""
    rows = read_results(path)
    kept = [r for r in rows if int(r["epoch"]) < first_epoch]
    if len(kept) == len(rows):
        return
    with path.open("w", newline="") as f:
        if rows:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(kept)


def plot_results(csv_path: Path) -> Path | None:
    """One small panel per column of ``results.csv`` against epoch; saved beside it as results.png."""
    rows = read_results(csv_path)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [k for k in rows[0] if k != "epoch"]
    epochs = [int(r["epoch"]) for r in rows]
    ncols = 5
    nrows = math.ceil(len(columns) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3 * ncols, 2.5 * nrows), squeeze=False)
    for ax, column in zip(axes.ravel(), columns):
        ax.plot(epochs, [float(r[column]) for r in rows], marker=".")
        ax.set_title(column, fontsize=9)
    for ax in axes.ravel()[len(columns):]:
        ax.axis("off")
    fig.tight_layout()
    out = csv_path.with_name("results.png")
    fig.savefig(out, dpi=100)
    plt.close(fig)
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


def plot_batch(images: torch.Tensor, targets: torch.Tensor, path: Path, max_images: int = 16) -> None:
    """A grid of a batch's images (uint8 or 0-1 float, RGB CHW) with their (img, cls, cx, cy, w, h) boxes."""
    images = images[:max_images].detach().cpu().float()
    if images.max() <= 1:
        images = images * 255
    n, _, h, w = images.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    canvas = np.full((rows * h, cols * w, 3), 255, dtype=np.uint8)
    targets = targets.detach().cpu()
    for i in range(n):
        tile = np.ascontiguousarray(images[i].permute(1, 2, 0).numpy()[..., ::-1].astype(np.uint8))
        mine = targets[targets[:, 0] == i]
        boxes = xywh2xyxy(mine[:, 2:6]) * torch.tensor([w, h, w, h])
        for cls, box in zip(mine[:, 1].int().tolist(), boxes.round().int().tolist()):
            colour = tuple(int(c) for c in np.array(((cls * 67) % 255, (cls * 151) % 255, (cls * 37 + 100) % 255)))
            cv2.rectangle(tile, tuple(box[:2]), tuple(box[2:]), colour, 2)
            cv2.putText(tile, str(cls), (box[0], max(box[1] - 2, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1)
        r, c = divmod(i, cols)
        canvas[r * h : (r + 1) * h, c * w : (c + 1) * w] = tile
        cv2.rectangle(canvas, (c * w, r * h), ((c + 1) * w - 1, (r + 1) * h - 1), (255, 255, 255), 2)
    cv2.imwrite(str(path), canvas)
