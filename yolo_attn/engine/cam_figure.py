"""The ``yolo-attn cam`` figure: one row per model (and image), columns: the detections, the CAM of each
layer, each attention block's spatial gate (overlaid on the image, colour bar beside), and a bar chart
of one layer's channel gates. Drawn with matplotlib's Agg backend."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402
from matplotlib import cm, colors  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from yolo_attn.utils.annotate import draw_detections  # noqa: E402

if TYPE_CHECKING:
    from yolo_attn.engine.cam import Explanation

PANEL_INCHES = 2.5  # width of one image panel
OVERLAY_ALPHA = 0.5
CMAP = "jet"
TITLE_WIDTH = 34  # characters per title line


def overlay(ax, rgb: np.ndarray, values: np.ndarray, vmin: float, vmax: float, title: str) -> None:
    """``values`` (same h, w as ``rgb``) blended over the image, with a colour bar of the real values."""
    norm = colors.Normalize(vmin=vmin, vmax=vmax if vmax > vmin else vmin + 1e-6)
    mappable = cm.ScalarMappable(norm=norm, cmap=CMAP)
    heat = mappable.to_rgba(values)[..., :3]
    ax.imshow((1 - OVERLAY_ALPHA) * rgb / 255.0 + OVERLAY_ALPHA * heat)
    ax.figure.colorbar(mappable, ax=ax, fraction=0.046, pad=0.02)
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def outline_boxes(ax, detections: np.ndarray) -> None:
    for x1, y1, x2, y2, *_ in detections:
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="white", linewidth=0.8))


def channel_bars(ax, title: str, weights: np.ndarray) -> None:
    ax.bar(np.arange(len(weights)), weights, width=1.0, color="tab:blue")
    ax.set_xlim(-0.5, len(weights) - 0.5)
    ax.set_title(f"{title}\n{len(weights)} channels, mean {weights.mean():.2f}", fontsize=8)
    ax.set_xlabel("channel", fontsize=7)
    ax.set_ylabel("gate", fontsize=7)
    ax.tick_params(labelsize=6)


def draw_row(axes: Sequence, image: np.ndarray, e: Explanation) -> None:
    """One model on one image across ``axes`` (left to right); spare axes are hidden."""
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    axes[0].imshow(cv2.cvtColor(draw_detections(image, e.detections, e.names), cv2.COLOR_BGR2RGB))
    axes[0].set_title(textwrap.fill(f"{e.label}: {len(e.detections)} detections; CAM target: {e.target}", TITLE_WIDTH),
                      fontsize=8)
    axes[0].axis("off")
    column = 1
    for layer, heatmap in e.cams.items():
        overlay(axes[column], rgb, heatmap, 0.0, 1.0, f"{e.label}\nCAM layer {layer} ({e.layer_types[layer]})")
        outline_boxes(axes[column], e.target_boxes)
        column += 1
    for title, values in e.spatial_gates:
        overlay(axes[column], rgb, values, float(values.min()), float(values.max()), f"{e.label}\n{title}")
        column += 1
    if e.channel_gate is not None:
        channel_bars(axes[column], f"{e.label}\n{e.channel_gate[0]}", e.channel_gate[1])
        column += 1
    for ax in axes[column:]:
        ax.axis("off")


def columns_of(e: Explanation) -> int:
    return 1 + len(e.cams) + len(e.spatial_gates) + (e.channel_gate is not None)


def render_figure(rows: Sequence[tuple[np.ndarray, Explanation]], path: Path, title: str = "", dpi: int = 100) -> Path:
    """Draw ``rows`` ((BGR image, explanation) each) into one PNG at ``path``; returns ``path``."""
    ncols = max(columns_of(e) for _, e in rows)
    heights = [PANEL_INCHES * image.shape[0] / image.shape[1] + 0.6 for image, _ in rows]
    fig, axes = plt.subplots(len(rows), ncols, squeeze=False, figsize=(ncols * PANEL_INCHES * 1.15, sum(heights)),
                             gridspec_kw={"height_ratios": heights})
    for (image, explanation), row_axes in zip(rows, axes, strict=True):
        draw_row(row_axes, image, explanation)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
