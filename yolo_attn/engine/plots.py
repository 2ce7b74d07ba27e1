"""Validation plots: PR curve, metric-confidence curves (F1, P, R) and the confusion matrix.

Drawn on bare ``matplotlib.figure.Figure`` objects rendered by Agg, so nothing touches pyplot's
global state or needs a display. Layout follows YOLOv5's plots (per-class lines under 21 classes).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from yolo_attn.metrics import CONFIDENCE_GRID, ClassMetrics, ConfusionMatrix, smooth

MAX_LEGEND_CLASSES = 20
DPI = 200


def _new_axes(size: tuple[float, float]):
    fig = Figure(figsize=size, tight_layout=True)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def _per_class_lines(ax, x: np.ndarray, curves: np.ndarray, labels: list[str]) -> None:
    if len(labels) <= MAX_LEGEND_CLASSES:
        for y, label in zip(curves, labels, strict=True):
            ax.plot(x, y, linewidth=1, label=label)
    elif len(curves):
        ax.plot(x, curves.T, linewidth=1, color="grey")


def _finish(fig, ax, xlabel: str, ylabel: str, title: str, path: Path) -> Path:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(bbox_to_anchor=(1.04, 1), loc="upper left")
    ax.set_title(title)
    fig.savefig(path, dpi=DPI)
    return path


def plot_pr_curve(metrics: ClassMetrics, names: list[str], path: Path) -> Path:
    """Precision-recall at IoU 0.5 per class and their mean, with AP50 in the legend."""
    fig, ax = _new_axes((9, 6))
    labels = [f"{names[c]} {ap:.3f}" for c, ap in zip(metrics.classes, metrics.ap50, strict=True)]
    _per_class_lines(ax, CONFIDENCE_GRID, metrics.pr_curve, labels)
    if len(metrics.classes):
        mean_ap50 = metrics.ap50.mean()
        ax.plot(
            CONFIDENCE_GRID,
            metrics.pr_curve.mean(0),
            linewidth=3,
            color="blue",
            label=f"all classes {mean_ap50:.3f} mAP@0.5",
        )
    return _finish(fig, ax, "Recall", "Precision", "Precision-Recall Curve", path)


def plot_metric_curve(curves: np.ndarray, classes: np.ndarray, names: list[str], ylabel: str, path: Path) -> Path:
    """A metric (F1, precision, recall) against confidence, per class and the smoothed mean with its peak."""
    fig, ax = _new_axes((9, 6))
    _per_class_lines(ax, CONFIDENCE_GRID, curves, [names[c] for c in classes])
    if len(curves):
        mean = smooth(curves.mean(0), 0.05)
        peak = mean.argmax()
        label = f"all classes {mean[peak]:.2f} at {CONFIDENCE_GRID[peak]:.3f}"
        ax.plot(CONFIDENCE_GRID, mean, linewidth=3, color="blue", label=label)
    return _finish(fig, ax, "Confidence", ylabel, f"{ylabel}-Confidence Curve", path)


def plot_confusion_matrix(confusion: ConfusionMatrix, names: list[str], path: Path, normalize: bool = True) -> Path:
    """Column-normalised confusion matrix (each true class sums to 1), background last."""
    matrix = (
        confusion.matrix / (confusion.matrix.sum(0, keepdims=True) + 1e-9) if normalize else confusion.matrix.copy()
    )
    matrix[matrix < 0.005] = np.nan  # blank instead of 0.00
    n = confusion.nc + 1
    fig, ax = _new_axes((12, 9))
    image = ax.imshow(matrix, cmap="Blues", vmin=0.0, interpolation="nearest")
    fig.colorbar(image, ax=ax)
    if n <= 99:
        ticks = [*names, "background"] if len(names) == confusion.nc else [*map(str, range(confusion.nc)), "background"]
        font = 8 if n < 30 else 5 if n < 60 else 3
        ax.set_xticks(range(n), ticks, rotation=90, fontsize=font)
        ax.set_yticks(range(n), ticks, fontsize=font)
    if n < 31:
        for (row, col), value in np.ndenumerate(matrix):
            if not np.isnan(value):
                ax.text(
                    col,
                    row,
                    f"{value:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if value > 0.5 else "black",
                )
    ax.set_xlabel("True")
    ax.set_ylabel("Predicted")
    ax.set_title("Confusion Matrix" + (" (normalised)" if normalize else ""))
    fig.savefig(path, dpi=DPI)
    return path


def validation_plot_calls(
    metrics: ClassMetrics, confusion: ConfusionMatrix | None, names: list[str], save_dir: Path
) -> list[tuple[Callable[..., Path], tuple]]:
    """The validation figures as ``(function, args)``: PR_curve, F1/P/R_curve and confusion_matrix PNGs."""
    save_dir.mkdir(parents=True, exist_ok=True)
    calls: list[tuple[Callable[..., Path], tuple]] = [
        (plot_pr_curve, (metrics, names, save_dir / "PR_curve.png")),
        (plot_metric_curve, (metrics.f1_curve, metrics.classes, names, "F1", save_dir / "F1_curve.png")),
        (plot_metric_curve, (metrics.precision_curve, metrics.classes, names, "Precision", save_dir / "P_curve.png")),
        (plot_metric_curve, (metrics.recall_curve, metrics.classes, names, "Recall", save_dir / "R_curve.png")),
    ]
    if confusion is not None:
        calls.insert(0, (plot_confusion_matrix, (confusion, names, save_dir / "confusion_matrix.png")))
    return calls
