"""The CAM figure on made-up explanations (no model): one column per kind of panel across rows, panels large
enough to read at the default resolution, row labels, plurals and the method's name."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from yolo_attn.engine.cam import Explanation, count_of
from yolo_attn.engine.cam_figure import PANEL_INCHES, Columns, cam_figure, method_name, render_figure

HEIGHT, WIDTH = 240, 320


def explanation(label: str, spatial: int = 0, channel: bool = False, detections: int = 1) -> Explanation:
    rng = np.random.default_rng(0)
    boxes = np.array([[40.0, 30.0, 200.0, 180.0, 0.9, 1.0]] * detections).reshape(-1, 6)
    return Explanation(
        label=label, detections=boxes, names=["cat", "dog"], target="all detections",
        cams={17 + i: rng.random((HEIGHT, WIDTH)) for i in range(3)}, layer_types=dict.fromkeys((17, 18, 19), "C3"),
        spatial_gates=[(f"layer {10 + i} CBAM spatial gate", rng.random((HEIGHT, WIDTH))) for i in range(spatial)],
        channel_gate=("layer 10 SE channel gates", rng.random(64)) if channel else None,
    )


@pytest.fixture(scope="module")
def rows() -> list[tuple[np.ndarray, Explanation]]:
    image = np.full((HEIGHT, WIDTH, 3), 127, np.uint8)
    return [(image, explanation("base", detections=2)), (image, explanation("CBAM", spatial=1, channel=True)),
            (image, explanation("SE", channel=True, detections=0))]


def test_columns_hold_one_kind_of_panel(rows):
    columns = Columns.of([e for _, e in rows])
    assert columns == Columns(cams=3, spatial=1, channel=True)
    assert columns.first_spatial == 5 and len(columns.width_ratios) == 7  # detections, 3 CAMs, colour bar, 2 gates


def test_gate_columns_line_up_across_rows(rows):
    figure = cam_figure(rows, title="Grad-CAM of yolov5n.yaml and its variants, seed 0, on 1 validation image")
    figure.canvas.draw()
    channel_axes = [ax for ax in figure.axes if ax.get_xlabel() == "channel"]
    assert len(channel_axes) == 2  # CBAM's and SE's, in the same column although SE has no spatial gate
    assert channel_axes[0].get_position().x0 == pytest.approx(channel_axes[1].get_position().x0)
    first_column = [ax for ax in figure.axes if ax.get_ylabel() in ("base", "CBAM", "SE")]
    assert [ax.get_ylabel() for ax in first_column] == ["base", "CBAM", "SE"]  # every row names its model
    assert [ax.get_title().split(";")[0] for ax in first_column] == ["2 detections", "1 detection", "0 detections"]
    assert figure.get_suptitle().endswith("seed 0, on 1 validation image")


def test_panels_are_readable_at_the_default_resolution(rows, tmp_path):
    path = render_figure(rows, tmp_path / "cam.png")
    height, width = cv2.imread(str(path)).shape[:2]
    assert width >= 7 * PANEL_INCHES * 100 * 0.9  # about 340 px per panel at 100 dpi
    assert height >= 3 * PANEL_INCHES * 100 * HEIGHT / WIDTH


def test_names_and_plurals():
    assert method_name("gradcam") == "Grad-CAM" and method_name("eigencam") == "Eigen-CAM"
    assert count_of(1, "validation image") == "1 validation image"
    assert count_of(2, "validation image") == "2 validation images"
