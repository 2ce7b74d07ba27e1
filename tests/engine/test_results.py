"""Training records: results.csv rows and their figure (axis labels, whole-number epochs), the progress columns, and
batch mosaics labelled with class names."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from yolo_attn.engine.results import (
    append_results_row,
    epoch_row,
    label_boxes,
    plot_batch,
    plot_results,
    progress_columns,
    progress_header,
    read_results,
    results_figure,
    truncate_results,
)
from yolo_attn.utils.annotate import class_color

LOSSES = ("box", "obj", "cls")


def write_results(path, epochs: int) -> None:
    for epoch in range(1, epochs + 1):
        metrics = {"precision": 0.1 * epoch, "recall": 0.2, "map50": 0.3, "map50_95": 0.2 + 1e-7 * epoch,
                   "loss": [0.1, 0.2, 0.3]}
        append_results_row(path, epoch_row(epoch, [0.5 / epoch, 0.2, 0.1], metrics, [0.01, 0.001, 0.001], LOSSES))


def test_results_figure_labels_every_panel_with_whole_epochs(tmp_path):
    write_results(tmp_path / "results.csv", 3)
    rows = read_results(tmp_path / "results.csv")
    figure = results_figure(rows)
    figure.canvas.draw()
    panels = [ax for ax in figure.axes if ax.axison]
    assert [ax.get_title() for ax in panels] == [k for k in rows[0] if k != "epoch"]  # 3 + 4 + 3 + 3 columns
    for ax in panels:
        assert ax.get_xlabel() == "epoch"
        ticks = [t for t in ax.get_xticks() if 1 <= t <= 3]
        assert ticks == [1, 2, 3] and all(float(t).is_integer() for t in ax.get_xticks())
        assert not ax.yaxis.get_major_formatter().get_offset()  # no "1e-7+0.2" written over the title
    path = plot_results(tmp_path / "results.csv")
    assert cv2.imread(str(path)).shape == (810, 1600, 3)  # 5 x 3 panels of 3.2 x 2.7 in at 100 dpi


def test_truncate_keeps_the_completed_epochs(tmp_path):
    write_results(tmp_path / "results.csv", 3)
    truncate_results(tmp_path / "results.csv", 2)  # resumed after epoch 2: epoch 3's row goes
    assert [int(r["epoch"]) for r in read_results(tmp_path / "results.csv")] == [1, 2]


def test_progress_columns_sit_under_their_titles():
    header = progress_header(LOSSES)
    line = progress_columns(3, 8, 1.25, [0.0512, 0.0211, 0.0007], 61, 320)
    assert header.split() == ["Epoch", "GPU_mem", "box_loss", "obj_loss", "cls_loss", "Instances", "Size"]
    assert line.split() == ["3/8", "1.25G", "0.0512", "0.0211", "0.0007", "61", "320"]
    assert len(header) == len(line)
    ends = [i + len(word) for word in header.split() for i in [header.index(word)]]
    assert [line[end - 1] != " " for end in ends] == [True] * 7  # right-aligned under each title


def label_width(mosaic: np.ndarray, colour: tuple[int, int, int], box_top: int) -> int:
    """The width of the widest run of ``colour`` (BGR) above a box's top edge: its label's filled background."""
    above = mosaic[: box_top - 2, :, ::-1].astype(int)  # RGB -> BGR
    return int((np.abs(above - colour).sum(-1) < 30).sum(1).max())


def test_plot_batch_writes_class_names_legibly(tmp_path):
    images = torch.full((2, 3, 320, 320), 100, dtype=torch.uint8)
    targets = torch.tensor([[0, 2, 0.5, 0.5, 0.4, 0.4], [1, 0, 0.3, 0.3, 0.2, 0.2]])  # a class-2 box from y = 96
    names = ["cat", "dog", "triangle"]
    mosaic = plot_batch(images, label_boxes(targets, 2, 320, 320), names, tmp_path / "batch.jpg")
    assert mosaic.shape == (320, 640, 3)  # two tiles side by side, at full size
    assert cv2.imread(str(tmp_path / "batch.jpg")).shape == (320, 640, 3)
    (text_width, text_height), _ = cv2.getTextSize("triangle", cv2.FONT_HERSHEY_SIMPLEX, 2 / 3, 1)
    assert text_height >= 10  # legible: letters at least 10 px high on a 320 px tile
    assert text_width <= label_width(mosaic, class_color(2), 96) <= text_width + 10  # the name, not "2"
    scored = plot_batch(images, [np.array([[64, 96, 192, 192, 0.9, 2]]), np.zeros((0, 6))], names,
                        tmp_path / "pred.jpg", scores=True)
    (scored_width, _), _ = cv2.getTextSize("triangle 0.90", cv2.FONT_HERSHEY_SIMPLEX, 2 / 3, 1)
    assert scored_width <= label_width(scored, class_color(2), 96) <= scored_width + 10


def test_plot_batch_keeps_large_batches_under_1920_px(tmp_path):
    images = torch.zeros((16, 3, 640, 640), dtype=torch.uint8)
    mosaic = plot_batch(images, [np.zeros((0, 6))] * 16, ["a"], tmp_path / "big.jpg")
    assert mosaic.shape == (1920, 1920, 3)


@pytest.mark.parametrize("batch", [1, 3])
def test_label_boxes_are_pixels_per_image(batch):
    targets = torch.tensor([[0, 1, 0.5, 0.5, 0.5, 0.25]] + [[batch - 1, 0, 0.25, 0.5, 0.5, 0.5]] * (batch > 1))
    boxes = label_boxes(targets, batch, 100, 200)
    assert len(boxes) == batch
    np.testing.assert_allclose(boxes[0][0], [50, 37.5, 150, 62.5, 1, 1])
