"""What a training run tells its user and leaves beside its weights: the model summary, labelled progress columns,
the validation table every epoch and per class at the end, epochs counted from 1, batch mosaics with class names,
and TensorBoard event files (when ``tensorboard`` is installed)."""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path

import cv2
import pytest

from tests.conftest import CONFIGS
from yolo_attn.data.synthetic import generate_demo_dataset
from yolo_attn.engine.results import progress_header
from yolo_attn.engine.trainer import train

NAMES = ("rectangle", "ellipse", "triangle")


class Records(logging.Handler):
    """The messages logged under ``yolo_attn`` while it is attached (caplog is per test; the run is per module)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[dict, list[str]]:
    """A 2-epoch yolov5n run on 8 synthetic 64-px images (2 batches of 4): its summary and its log messages."""
    root = tmp_path_factory.mktemp("training_logs")
    data = generate_demo_dataset(root / "data", n_train=8, n_val=4, img_size=64)
    logger, records = logging.getLogger("yolo_attn"), Records()
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(records)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("YOLO_ATTN_CACHE", str(root / "cache"))
            summary = train(cfg=str(CONFIGS / "models" / "yolov5n.yaml"), data=str(data), epochs=2, img=64, batch=4,
                            workers=0, seed=0, project=str(root / "runs"))
    finally:
        logger.removeHandler(records)
        logger.setLevel(level)
    return summary, records.messages


def test_log_shows_model_summary_columns_and_epochs_from_1(run):
    log = "\n".join(run[1])
    assert re.search(r"^\s+24\s+\[17, 20, 23\]\s+1\s+[\d,]+\s+Detect", log, re.M)  # the layer table
    assert re.search(r"yolov5n summary: \d+ layers, 1,767,976 parameters, [\d.]+ GFLOPs at 64 px", log)
    assert progress_header(("box", "obj", "cls")) in log
    assert progress_header(("box", "obj", "cls")).split() == ["Epoch", "GPU_mem", "box_loss", "obj_loss", "cls_loss",
                                                              "Instances", "Size"]
    assert "epochs 1..2," in log and "epochs 0.." not in log
    assert len(re.findall(r"^\s+Class\s+Images\s+Instances\s+P\s+R\s+mAP50\s+mAP50-95$", log, re.M)) >= 2  # per epoch


def test_per_class_table_at_the_end(run):
    summary, messages = run
    table = next(m for m in messages if m.startswith("last validation, epoch 2:")).splitlines()
    assert table[1].split() == ["Class", "Images", "Instances", "P", "R", "mAP50", "mAP50-95"]
    assert table[-1].startswith("Speed: ")
    rows = {line.split()[0]: line.split()[1:] for line in table[2:-1]}
    assert rows["all"][0] == "4"  # images
    assert float(rows["all"][5]) == pytest.approx(summary["map50_95"], abs=6e-4)  # "%.3g" of the summary's figure
    assert set(rows) - {"all"} and set(rows) - {"all"} <= set(NAMES)


def test_results_csv_counts_epochs_from_1(run):
    summary, _ = run
    with open(Path(summary["save_dir"]) / "results.csv", newline="") as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == [1, 2]


def test_batch_mosaics(run):
    save_dir = Path(run[0]["save_dir"])
    for index in (0, 1):  # the two batches of the first epoch; 4 images of 64 px in a 2 x 2 grid
        assert cv2.imread(str(save_dir / f"train_batch{index}.jpg")).shape == (128, 128, 3)
    assert not (save_dir / "train_batch2.jpg").exists()
    labels, predictions = (cv2.imread(str(save_dir / f"val_batch0_{kind}.jpg")) for kind in ("labels", "pred"))
    assert labels is not None and predictions is not None and labels.shape == predictions.shape


def test_tensorboard_event_file_holds_the_results(run):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    save_dir = Path(run[0]["save_dir"])
    assert list(save_dir.glob("events.out.tfevents.*"))
    events = EventAccumulator(str(save_dir), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    with open(save_dir / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert set(tags["scalars"]) == set(rows[0]) - {"epoch"}  # losses, metrics, val losses, learning rates
    for tag in ("train/box_loss", "metrics/mAP_0.5:0.95", "x/lr0"):
        logged = events.Scalars(tag)
        assert [e.step for e in logged] == [1, 2]
        assert [e.value for e in logged] == pytest.approx([float(r[tag]) for r in rows], rel=1e-5)
    assert {"train_batch0", "train_batch1", "results", "val_batch0_pred", "confusion_matrix"} <= set(tags["images"])
    mosaic = events.Images("train_batch0")[0]
    assert (mosaic.width, mosaic.height) == (128, 128)
