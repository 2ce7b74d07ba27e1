"""Detection metrics: matching, per-class AP / P / R, confusion matrix, and COCOeval.

AP is YOLOv5's (ultralytics/yolov5 utils/metrics.py, val.py v7.0): predictions matched greedily to
labels at each IoU threshold 0.50:0.05:0.95, AP = 101-point interpolated area under the precision
envelope (the COCO scheme), P and R read at the confidence that maximises the smoothed mean F1.
COCO metrics come from COCOeval (Lin et al., ECCV 2014): faster-coco-eval's by default (the same 12
numbers as pycocotools' to 1e-16 on COCO128, ~4x faster), or pycocotools', the reference.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yolo_attn.errors import UserError
from yolo_attn.utils.boxes import box_iou

IOU_THRESHOLDS = torch.linspace(0.5, 0.95, 10)
CONFIDENCE_GRID = np.linspace(0, 1, 1000)
COCO_STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
EPS = 1e-16
# backend -> (pip package, "module:COCO class", "module:COCOeval class"); "auto": the first one installed
COCO_BACKENDS = {
    "pycocotools": ("pycocotools", "pycocotools.coco:COCO", "pycocotools.cocoeval:COCOeval"),
    "faster": ("faster-coco-eval", "faster_coco_eval:COCO", "faster_coco_eval:COCOeval_faster"),
}
AUTO_ORDER = ("faster", "pycocotools")


def match_predictions(
    detections: torch.Tensor, labels: torch.Tensor, iou_thresholds: torch.Tensor = IOU_THRESHOLDS
) -> torch.Tensor:
    """Which detections are true positives at each IoU threshold: ``(n, len(iou_thresholds))`` bool.

    ``detections``: (n, 6) x1, y1, x2, y2, score, class, best first; ``labels``: (m, 5) class, x1, y1, x2, y2.
    Per threshold, each detection takes its best-IoU same-class label; a label claimed by several
    detections goes to the first of them in detection order (YOLOv5's val.process_batch).
    """
    correct = np.zeros((detections.shape[0], len(iou_thresholds)), dtype=bool)
    if not len(detections) or not len(labels):
        return torch.from_numpy(correct)
    iou = box_iou(labels[:, 1:], detections[:, :4])
    same_class = labels[:, 0:1] == detections[:, 5]
    for t, threshold in enumerate(iou_thresholds.tolist()):
        label_idx, det_idx = torch.where((iou >= threshold) & same_class)
        if not len(label_idx):
            continue
        matches = torch.stack((label_idx.double(), det_idx.double(), iou[label_idx, det_idx].double()), 1).cpu().numpy()
        if len(matches) > 1:
            matches = matches[matches[:, 2].argsort()[::-1]]
            matches = matches[np.unique(matches[:, 1], return_index=True)[1]]
            matches = matches[np.unique(matches[:, 0], return_index=True)[1]]
        correct[matches[:, 1].astype(int), t] = True
    return torch.from_numpy(correct)


def smooth(y: np.ndarray, fraction: float = 0.05) -> np.ndarray:
    """Box filter over ``fraction`` of the curve (YOLOv5's width rule), edges padded with the end values."""
    width = round(len(y) * fraction * 2) // 2 + 1
    padded = np.concatenate((np.full(width // 2, y[0]), y, np.full(width // 2, y[-1])))
    return np.convolve(padded, np.ones(width) / width, mode="valid")


def compute_ap(recall: np.ndarray, precision: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """101-point interpolated AP of one PR curve; also the padded precision envelope and recall."""
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([1.0], precision, [0.0]))
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))
    x = np.linspace(0, 1, 101)
    return float(np.trapezoid(np.interp(x, mrec, mpre), x)), mpre, mrec


@dataclass
class ClassMetrics:
    """Per-class results for the classes that have labels (``classes``), and the curves behind them."""

    classes: np.ndarray  # (k,) class indices
    instances: np.ndarray  # (k,) labels per class
    precision: np.ndarray  # (k,) at the max-F1 confidence
    recall: np.ndarray
    f1: np.ndarray
    ap: np.ndarray  # (k, 10) AP at IoU 0.50:0.05:0.95
    precision_curve: np.ndarray  # (k, 1000) over CONFIDENCE_GRID
    recall_curve: np.ndarray
    f1_curve: np.ndarray
    pr_curve: np.ndarray  # (k, 1000) precision at recall CONFIDENCE_GRID (IoU 0.5)

    @property
    def ap50(self) -> np.ndarray:
        return self.ap[:, 0]

    @property
    def ap50_95(self) -> np.ndarray:
        return self.ap.mean(1)


def ap_per_class(tp: np.ndarray, conf: np.ndarray, pred_cls: np.ndarray, target_cls: np.ndarray) -> ClassMetrics:
    """AP, P, R, F1 per class from all detections of a dataset (YOLOv5's ``ap_per_class``).

    ``tp``: (n, 10) true-positive flags per IoU threshold; ``conf``, ``pred_cls``: (n,);
    ``target_cls``: (m,) the class of every label.
    """
    order = np.argsort(-conf)
    tp, conf, pred_cls = tp[order], conf[order], pred_cls[order]
    classes, instances = np.unique(target_cls, return_counts=True)
    k, grid = len(classes), CONFIDENCE_GRID
    ap = np.zeros((k, tp.shape[1]))
    p_curve, r_curve, pr_curve = np.zeros((k, len(grid))), np.zeros((k, len(grid))), np.zeros((k, len(grid)))
    for ci, c in enumerate(classes):
        mine = pred_cls == c
        if not mine.any():
            continue
        tpc = tp[mine].cumsum(0)
        fpc = (1 - tp[mine]).cumsum(0)
        recall = tpc / (instances[ci] + EPS)
        precision = tpc / (tpc + fpc)
        r_curve[ci] = np.interp(-grid, -conf[mine], recall[:, 0], left=0)  # conf decreases along the curve
        p_curve[ci] = np.interp(-grid, -conf[mine], precision[:, 0], left=1)
        for j in range(tp.shape[1]):
            ap[ci, j], mpre, mrec = compute_ap(recall[:, j], precision[:, j])
            if j == 0:
                pr_curve[ci] = np.interp(grid, mrec, mpre)
    f1_curve = 2 * p_curve * r_curve / (p_curve + r_curve + EPS)
    best = smooth(f1_curve.mean(0), 0.1).argmax() if k else 0
    return ClassMetrics(
        classes=classes.astype(int),
        instances=instances,
        precision=p_curve[:, best],
        recall=r_curve[:, best],
        f1=f1_curve[:, best],
        ap=ap,
        precision_curve=p_curve,
        recall_curve=r_curve,
        f1_curve=f1_curve,
        pr_curve=pr_curve,
    )


class ConfusionMatrix:
    """(nc + 1) x (nc + 1) counts, rows = predicted class, columns = true class, last = background.

    Detections above ``conf`` are matched to labels above ``iou_thres`` IoU regardless of class
    (YOLOv5's ConfusionMatrix); unmatched detections count as background false positives, also on
    images without labels.
    """

    def __init__(self, nc: int, conf: float = 0.25, iou_thres: float = 0.45):
        self.matrix = np.zeros((nc + 1, nc + 1))
        self.nc = nc
        self.conf = conf
        self.iou_thres = iou_thres

    def update(self, detections: torch.Tensor, labels: torch.Tensor) -> None:
        """``detections``: (n, 6) x1, y1, x2, y2, score, class; ``labels``: (m, 5) class, x1, y1, x2, y2."""
        detections = detections[detections[:, 4] > self.conf]
        true_classes = labels[:, 0].int().tolist()
        det_classes = detections[:, 5].int().tolist()
        matches = np.zeros((0, 3))
        if len(labels) and len(detections):
            iou = box_iou(labels[:, 1:], detections[:, :4])
            label_idx, det_idx = torch.where(iou > self.iou_thres)
            matches = (
                torch.stack((label_idx.double(), det_idx.double(), iou[label_idx, det_idx].double()), 1).cpu().numpy()
            )
            if len(matches) > 1:
                matches = matches[matches[:, 2].argsort()[::-1]]
                matches = matches[np.unique(matches[:, 1], return_index=True)[1]]
                matches = matches[matches[:, 2].argsort()[::-1]]
                matches = matches[np.unique(matches[:, 0], return_index=True)[1]]
        matched_label, matched_det = matches[:, 0].astype(int), matches[:, 1].astype(int)
        for i, tc in enumerate(true_classes):
            hit = matched_det[matched_label == i]
            self.matrix[det_classes[hit[0]] if len(hit) == 1 else self.nc, tc] += 1
        for i, dc in enumerate(det_classes):
            if i not in matched_det:
                self.matrix[dc, self.nc] += 1


@dataclass
class DetectionStats:
    """Accumulates per-image matches over a dataset, then :meth:`compute` gives the metrics."""

    nc: int
    confusion: ConfusionMatrix | None = None

    def __post_init__(self) -> None:
        self._correct: list[np.ndarray] = []
        self._conf: list[np.ndarray] = []
        self._pred_cls: list[np.ndarray] = []
        self._target_cls: list[np.ndarray] = []
        self.images_per_class = np.zeros(self.nc, dtype=np.int64)
        self.images = 0

    def update(self, detections: torch.Tensor, labels: torch.Tensor) -> None:
        """One image: detections (n, 6) and labels (m, 5 ``cls, x1, y1, x2, y2``), both in original pixels."""
        self.images += 1
        self._correct.append(match_predictions(detections, labels).numpy())
        self._conf.append(detections[:, 4].cpu().numpy())
        self._pred_cls.append(detections[:, 5].cpu().numpy())
        target_cls = labels[:, 0].cpu().numpy()
        self._target_cls.append(target_cls)
        self.images_per_class[np.unique(target_cls.astype(int))] += 1
        if self.confusion is not None:
            self.confusion.update(detections, labels)

    def per_image(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """Each image's ``(correct (n, 10), conf (n,), pred_cls (n,), target_cls (m,))`` in update order: what a
        bootstrap over images resamples (``yolo_attn.engine.ablation_images``)."""
        return list(zip(self._correct, self._conf, self._pred_cls, self._target_cls, strict=True))

    @property
    def target_classes(self) -> np.ndarray:
        return np.concatenate(self._target_cls) if self._target_cls else np.zeros(0)

    def compute(self) -> ClassMetrics:
        correct = np.concatenate(self._correct) if self._correct else np.zeros((0, len(IOU_THRESHOLDS)), bool)
        conf = np.concatenate(self._conf) if self._conf else np.zeros(0)
        pred_cls = np.concatenate(self._pred_cls) if self._pred_cls else np.zeros(0)
        return ap_per_class(correct.astype(np.float64), conf, pred_cls, self.target_classes)


def resolve_coco_backend(backend: str) -> str:
    """``backend``, or for ``"auto"`` the first of :data:`AUTO_ORDER` whose module is installed."""
    if backend == "auto":
        modules = {name: re.split("[.:]", COCO_BACKENDS[name][1])[0] for name in AUTO_ORDER}
        return next((name for name in AUTO_ORDER if importlib.util.find_spec(modules[name])), AUTO_ORDER[-1])
    if backend not in COCO_BACKENDS:
        raise UserError(f"unknown COCO backend {backend!r}; choose from auto, {', '.join(COCO_BACKENDS)}")
    return backend


def coco_backend_classes(backend: str) -> tuple[type, type]:
    """(COCO, COCOeval) classes of ``backend`` (or ``"auto"``); faster-coco-eval mirrors pycocotools' API."""
    backend = resolve_coco_backend(backend)
    package, *targets = COCO_BACKENDS[backend]
    try:
        return tuple(getattr(importlib.import_module(module), name) for module, name in (t.split(":") for t in targets))
    except ImportError:
        raise UserError(f"the '{backend}' COCO backend needs the {package} package: pip install {package}") from None


def coco_evaluate(
    ground_truth: dict[str, Any] | Path | str,
    predictions: list[dict[str, Any]],
    image_ids: list[int] | None = None,
    backend: str = "auto",
) -> dict[str, float]:
    """COCOeval bbox stats (AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl).

    ``ground_truth``: a COCO instances dict or json path; ``predictions``: COCO result entries;
    ``image_ids``: the images evaluated (default: all of the ground truth); ``backend``:
    ``auto``, ``pycocotools`` or ``faster`` (faster-coco-eval, same numbers, if installed).
    """
    coco_cls, eval_cls = coco_backend_classes(backend)
    if not predictions:
        return dict.fromkeys(COCO_STAT_NAMES, 0.0)
    logging.getLogger("faster_coco_eval").setLevel(logging.WARNING)  # it logs progress at INFO
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints it
        if isinstance(ground_truth, dict):
            gt = coco_cls()
            gt.dataset = {**ground_truth, "annotations": [dict(a) for a in ground_truth.get("annotations", [])]}
            gt.createIndex()  # on copies: COCOeval writes flags into the annotations
        else:
            gt = coco_cls(str(ground_truth))
        evaluator = eval_cls(gt, gt.loadRes([dict(p) for p in predictions]), "bbox")  # loadRes adds keys
        if image_ids is not None:
            evaluator.params.imgIds = list(image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    # strict=False: faster-coco-eval appends AR50 and AR75 after the 12 standard COCO stats
    return {name: float(v) for name, v in zip(COCO_STAT_NAMES, evaluator.stats, strict=False)}
