"""The ``yolo-attn cam`` figure: one row per model (and image), its label on the left. Columns, aligned across
rows: the detections, the CAM of each layer (one colour bar for all, every map scaled to 0-1), each attention
block's spatial gate overlaid on the image (its own colour bar: gate values), and a bar chart of one layer's channel
gates. A row without a kind of gate leaves that column empty, so every column holds one kind of panel. Drawn on a
bare ``matplotlib.figure.Figure`` (Agg), without pyplot's global state."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from matplotlib import cm, colors
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.gridspec import GridSpec
from matplotlib.patches import Rectangle

from yolo_attn.utils.annotate import class_color, text_color

if TYPE_CHECKING:
    from yolo_attn.engine.cam import Explanation

PANEL_INCHES = 3.4  # width of one image panel
COLOUR_BAR_WIDTH = 0.07  # of a panel: the CAM colour bar's column
LABEL_INCHES = 0.5  # the row labels' margin
OVERLAY_ALPHA = 0.5
CMAP = "jet"
FONT = 9
TITLE_WIDTH = 40  # characters per panel title line
METHOD_NAMES = {"gradcam": "Grad-CAM", "hirescam": "HiResCAM", "eigencam": "Eigen-CAM"}


def method_name(method: str) -> str:
    """The CAM method as its paper writes it (``gradcam`` -> ``Grad-CAM``)."""
    return METHOD_NAMES.get(method, method)


@dataclass(frozen=True)
class Columns:
    """Where each kind of panel goes, the same for every row: detections in column 0, then ``cams`` CAM columns,
    the CAM colour bar, ``spatial`` spatial-gate columns and, with ``channel``, the channel gates last."""

    cams: int
    spatial: int
    channel: bool

    @classmethod
    def of(cls, explanations: Sequence[Explanation]) -> Columns:
        return cls(max(len(e.cams) for e in explanations), max(len(e.spatial_gates) for e in explanations),
                   any(e.channel_gate is not None for e in explanations))

    @property
    def colour_bar(self) -> int:
        return 1 + self.cams

    @property
    def first_spatial(self) -> int:
        return self.colour_bar + 1

    @property
    def width_ratios(self) -> list[float]:
        return [1.0] * (1 + self.cams) + [COLOUR_BAR_WIDTH] + [1.0] * (self.spatial + self.channel)


def overlay(ax: Axes, rgb: np.ndarray, values: np.ndarray, norm: colors.Normalize) -> cm.ScalarMappable:
    """``values`` (same h, w as ``rgb``) blended over the image; returns the colour mapping for a colour bar."""
    mappable = cm.ScalarMappable(norm=norm, cmap=CMAP)
    ax.imshow((1 - OVERLAY_ALPHA) * rgb / 255.0 + OVERLAY_ALPHA * mappable.to_rgba(values)[..., :3])
    ax.axis("off")
    return mappable


def outline_boxes(ax: Axes, detections: np.ndarray) -> None:
    for x1, y1, x2, y2, *_ in detections:
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="white", linewidth=1.0))


def matplotlib_colour(bgr: tuple[int, int, int]) -> tuple[float, float, float]:
    """An OpenCV BGR colour (0-255) as matplotlib's RGB (0-1)."""
    blue, green, red = bgr
    return red / 255, green / 255, blue / 255


def labelled_boxes(ax: Axes, detections: np.ndarray, names: Sequence[str], image_width: int) -> None:
    """Each detection's box in its class colour with ``name score`` on its top edge, in figure points (legible at
    any image size); boxes in the right quarter of the image carry their label right-aligned, inside the image."""
    for x1, y1, x2, y2, score, cls in detections:
        index = int(cls)
        colour = matplotlib_colour(class_color(index))
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=1.5))
        name = names[index] if 0 <= index < len(names) else str(index)
        right = x1 > 0.75 * image_width
        ax.text(x2 if right else x1, y1, f"{name} {score:.2f}", fontsize=FONT - 1, va="bottom",
                ha="right" if right else "left", color=matplotlib_colour(text_color(class_color(index))),
                bbox={"facecolor": colour, "edgecolor": "none", "pad": 1.0}, clip_on=True)


def channel_bars(ax: Axes, title: str, weights: np.ndarray) -> None:
    ax.bar(np.arange(len(weights)), weights, width=1.0, color="tab:blue")
    ax.set_xlim(-0.5, len(weights) - 0.5)
    ax.set_title(f"{title}\n{len(weights)} channels, mean {weights.mean():.2f}", fontsize=FONT)
    ax.set_xlabel("channel", fontsize=FONT - 1)
    ax.set_ylabel("gate", fontsize=FONT - 1)
    ax.tick_params(labelsize=FONT - 2)


def wrap(text: str) -> str:
    return textwrap.fill(text, TITLE_WIDTH)


def draw_row(fig: Figure, grid: GridSpec, row: int, image: np.ndarray, e: Explanation, columns: Columns) -> None:
    """One model on one image in ``grid``'s row ``row``; cells a row has nothing for stay empty."""
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    detections_ax = fig.add_subplot(grid[row, 0])
    detections_ax.imshow(rgb)
    labelled_boxes(detections_ax, e.detections, e.names, image.shape[1])
    count = len(e.detections)
    detections_ax.set_title(wrap(f"{count} detection{'s' if count != 1 else ''}; CAM target: {e.target}"),
                            fontsize=FONT)
    detections_ax.set_xticks([])
    detections_ax.set_yticks([])
    detections_ax.set_ylabel(e.label, fontsize=FONT + 2, fontweight="bold")
    for column, (layer, heatmap) in enumerate(e.cams.items(), start=1):
        ax = fig.add_subplot(grid[row, column])
        overlay(ax, rgb, heatmap, colors.Normalize(0.0, 1.0))
        outline_boxes(ax, e.target_boxes)
        ax.set_title(f"CAM, layer {layer} ({e.layer_types[layer]})", fontsize=FONT)
    for column, (title, values) in enumerate(e.spatial_gates, start=columns.first_spatial):
        ax = fig.add_subplot(grid[row, column])
        low, high = float(values.min()), float(values.max())
        mappable = overlay(ax, rgb, values, colors.Normalize(low, high if high > low else low + 1e-6))
        fig.colorbar(mappable, ax=ax, fraction=0.046, pad=0.02).ax.tick_params(labelsize=FONT - 2)
        ax.set_title(wrap(title), fontsize=FONT)
    if e.channel_gate is not None:
        channel_bars(fig.add_subplot(grid[row, -1]), *e.channel_gate)


def cam_figure(rows: Sequence[tuple[np.ndarray, Explanation]], title: str = "") -> Figure:
    """The figure of ``rows`` ((BGR image, explanation) each), one row each, columns as :class:`Columns` says."""
    columns = Columns.of([e for _, e in rows])
    heights = [PANEL_INCHES * image.shape[0] / image.shape[1] + 0.5 for image, _ in rows]
    width = LABEL_INCHES + PANEL_INCHES * sum(columns.width_ratios) * 1.12
    fig = Figure(figsize=(width, sum(heights) + (0.5 if title else 0.0)), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(len(rows), len(columns.width_ratios), width_ratios=columns.width_ratios,
                            height_ratios=heights)
    for row, (image, explanation) in enumerate(rows):
        draw_row(fig, grid, row, image, explanation, columns)
    if columns.cams:
        bar = fig.colorbar(cm.ScalarMappable(colors.Normalize(0.0, 1.0), CMAP),
                           cax=fig.add_subplot(grid[:, columns.colour_bar]))
        bar.set_label("CAM (each map scaled to 0-1)", fontsize=FONT)
        bar.ax.tick_params(labelsize=FONT - 1)
    if title:
        fig.suptitle(title, fontsize=FONT + 3)
    return fig


def render_figure(rows: Sequence[tuple[np.ndarray, Explanation]], path: Path, title: str = "", dpi: int = 100) -> Path:
    """:func:`cam_figure` of ``rows`` saved as a PNG at ``path``; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cam_figure(rows, title).savefig(path, dpi=dpi)
    return path
