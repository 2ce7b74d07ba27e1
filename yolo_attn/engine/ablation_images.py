"""Per-image detection statistics of one trained (variant, seed) pair, and its mAP on any resample of the images.

A bootstrap over validation images needs the mAP of many resamples. Matching detections to labels is done once per
image (:class:`~yolo_attn.metrics.DetectionStats`); a resample only reweights images: an image drawn k times counts
each of its detections and labels k times. With the detections sorted by confidence once, the mAP of a resample is
a weighted cumulative sum per class followed by YOLOv5's 101-point AP (:func:`~yolo_attn.metrics.compute_ap`), the
same numbers :func:`~yolo_attn.metrics.ap_per_class` gives for the resample's images listed out (equal weights:
the plain mAP).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from yolo_attn.errors import UserError
from yolo_attn.metrics import EPS, IOU_THRESHOLDS, DetectionStats, compute_ap

ARRAYS = ("correct", "conf", "pred_cls", "det_image", "target_cls", "target_image", "images")


@dataclass
class ImageStats:
    """Every detection of a validation run (``correct``: true positive at each IoU threshold, ``conf``,
    ``pred_cls``, ``det_image``: its image's index) and every label (``target_cls``, ``target_image``);
    ``images``: the image files in evaluation order (pairs are compared image by image)."""

    correct: np.ndarray  # (n, 10) bool
    conf: np.ndarray  # (n,)
    pred_cls: np.ndarray  # (n,) int
    det_image: np.ndarray  # (n,) int
    target_cls: np.ndarray  # (m,) int
    target_image: np.ndarray  # (m,) int
    images: np.ndarray  # (k,) str
    _classes: list[tuple[int, np.ndarray, np.ndarray]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        order = np.argsort(-self.conf, kind="stable")
        present = np.unique(np.concatenate((self.target_cls, self.pred_cls))).astype(int)
        self._classes = []  # (class, its detections' image indices, their true-positive flags), best first
        for c in present:
            mine = order[self.pred_cls[order] == c]
            self._classes.append((int(c), self.det_image[mine], self.correct[mine].astype(np.float64)))
        self._label_counts = np.zeros((len(self.images), int(present.max(initial=-1)) + 1))
        np.add.at(self._label_counts, (self.target_image, self.target_cls), 1)

    @classmethod
    def from_detection_stats(cls, stats: DetectionStats, images: list[str]) -> ImageStats:
        per_image = stats.per_image()
        if len(per_image) != len(images):
            raise ValueError(f"{len(per_image)} images of statistics for {len(images)} image files")
        sizes = [len(conf) for _, conf, _, _ in per_image]
        label_sizes = [len(target) for *_, target in per_image]
        return cls(
            correct=np.concatenate([c for c, *_ in per_image]) if per_image else np.zeros((0, len(IOU_THRESHOLDS))),
            conf=np.concatenate([conf for _, conf, _, _ in per_image]) if per_image else np.zeros(0),
            pred_cls=np.concatenate([p for _, _, p, _ in per_image]).astype(int) if per_image else np.zeros(0, int),
            det_image=np.repeat(np.arange(len(per_image)), sizes),
            target_cls=np.concatenate([t for *_, t in per_image]).astype(int) if per_image else np.zeros(0, int),
            target_image=np.repeat(np.arange(len(per_image)), label_sizes),
            images=np.array(images, dtype=str),
        )

    def save(self, path: Path) -> None:
        np.savez_compressed(path, **{name: getattr(self, name) for name in ARRAYS})

    @classmethod
    def load(cls, path: Path) -> ImageStats:
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(**{name: data[name] for name in ARRAYS})
        except (OSError, KeyError, ValueError) as e:
            raise UserError(f"{path}: unreadable per-image statistics ({e}); delete it, rerun with --resume") from None

    def weighted_map(self, weights: np.ndarray) -> tuple[float, float]:
        """(mAP50, mAP50-95) over the classes with labels when image i counts ``weights[i]`` times."""
        labels = weights @ self._label_counts if len(self._label_counts) else np.zeros(0)
        ap = []
        for c, det_image, correct in self._classes:
            if labels[c] == 0:
                continue  # a class without labels in the resample is not averaged (YOLOv5's mAP)
            ap.append(self._class_ap(weights[det_image], correct, labels[c]))
        if not ap:
            return 0.0, 0.0
        table = np.array(ap)
        return float(table[:, 0].mean()), float(table.mean())

    @staticmethod
    def _class_ap(det_weights: np.ndarray, correct: np.ndarray, labels: float) -> np.ndarray:
        """AP at each IoU threshold of one class's detections (best first) weighted by their image's weight."""
        drawn = det_weights > 0
        if not drawn.any():
            return np.zeros(correct.shape[1])
        w = det_weights[drawn]
        tpc = (w[:, None] * correct[drawn]).cumsum(0)
        recall = tpc / (labels + EPS)
        precision = tpc / w.cumsum()[:, None]  # true positives over detections so far (integer counts: exact)
        return np.array([compute_ap(recall[:, j], precision[:, j])[0] for j in range(correct.shape[1])])

    def bootstrap_maps(self, counts: np.ndarray) -> np.ndarray:
        """mAP50-95 on each resample (``counts``: ``(resamples, images)`` draws per image)."""
        if counts.shape[1] != len(self.images):
            raise ValueError(f"resamples of {counts.shape[1]} images for {len(self.images)} images")
        return np.array([self.weighted_map(row.astype(np.float64))[1] for row in counts])


def check_same_images(a: ImageStats, b: ImageStats, names: tuple[str, str]) -> None:
    """Paired comparisons need the same validation images in the same order."""
    if a.images.shape != b.images.shape or not (a.images == b.images).all():
        raise UserError(f"{names[0]} and {names[1]} were validated on different images; rerun one of them")
