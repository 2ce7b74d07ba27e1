"""TensorBoard logging of a training run, as YOLOv5's and Ultralytics' TensorBoard loggers do: every
``results.csv`` value as a scalar once per epoch under the same names (``train/box_loss``, ``metrics/mAP_0.5``,
``val/cls_loss``, ``x/lr0``, ...; the step is the epoch, counted from 1), the first training batches as images,
and the final plots as images at the end.

Written with :mod:`torch.utils.tensorboard` into the run folder, beside ``results.csv``, when the optional
``tensorboard`` package is installed (``pip install "yolo-attn[tensorboard]"``); without it the run logs one
note and writes no event file. ``tensorboard --logdir runs/train`` shows every run of a project side by side.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

LOGGER = logging.getLogger(__name__)

# The run folder's figures written at the end of training, logged as images when present.
FINAL_FIGURES = (
    "results.png", "labels.jpg", "confusion_matrix.png", "PR_curve.png", "F1_curve.png", "P_curve.png",
    "R_curve.png", "val_batch0_labels.jpg", "val_batch0_pred.jpg",
)


def open_writer(log_dir: Path) -> Any | None:
    """A ``SummaryWriter`` on ``log_dir``, or None (with a note) when the ``tensorboard`` package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch.utils.tensorboard needs the tensorboard package
        LOGGER.info('TensorBoard: not installed, no event file (pip install "yolo-attn[tensorboard]" to log to it)')
        return None
    LOGGER.info(f"TensorBoard: logging to {log_dir}; view with: tensorboard --logdir {log_dir.parent}")
    return SummaryWriter(log_dir=str(log_dir))


class TensorBoardLogger:
    """One run's event file in ``log_dir``; every method does nothing when TensorBoard is not installed or
    ``log_dir`` is None (a process that does not log)."""

    def __init__(self, log_dir: Path | None) -> None:
        self.writer = open_writer(log_dir) if log_dir is not None else None

    @property
    def enabled(self) -> bool:
        return self.writer is not None

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        """Every value of ``values`` but ``epoch`` (a ``results.csv`` row) under its own name."""
        if self.writer is None:
            return
        for tag, value in values.items():
            if tag != "epoch":
                self.writer.add_scalar(tag, float(value), step)
        self.writer.flush()

    def image(self, tag: str, rgb: np.ndarray, step: int) -> None:
        """An RGB ``(h, w, 3)`` uint8 image."""
        if self.writer is not None:
            self.writer.add_image(tag, np.ascontiguousarray(rgb), step, dataformats="HWC")

    def image_files(self, paths: Iterable[Path], step: int) -> None:
        """The images among ``paths`` that exist, each under its file's stem."""
        if self.writer is None:
            return
        for path in paths:
            image = cv2.imread(str(path)) if path.is_file() else None
            if image is not None:
                self.image(path.stem, image[..., ::-1], step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
