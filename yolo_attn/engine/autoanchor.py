"""AutoAnchor: check how well a head's anchors fit a dataset's boxes and evolve better ones.

YOLOv5's ``utils/autoanchor.py`` recipe (Jocher et al. 2020): best possible recall (BPR) is the
share of label boxes whose best anchor is within ``anchor_t`` in both width and height ratio. Below
0.98, anchors are re-estimated by k-means on whitened box sizes and refined by a genetic
mutation search on the thresholded best-ratio fitness.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from yolo_attn.nn.heads.contract import AnchorBasedHead

BPR_THRESHOLD = 0.98


@dataclass(frozen=True)
class AnchorReport:
    """Outcome of :func:`check_anchors`: recall and anchors-above-threshold before/after, and whether it changed."""

    bpr: float
    anchors_above_threshold: float
    new_bpr: float | None = None
    replaced: bool = False


def label_sizes(shapes: np.ndarray, labels: list[np.ndarray], img_size: int,
                jitter: np.random.Generator | None = None) -> np.ndarray:
    """Box (w, h) in pixels after resizing each image's long side to ``img_size`` (with a generator ``jitter``:
    scale-jittered 0.9-1.1 per image)."""
    shapes = img_size * np.asarray(shapes, dtype=np.float64) / np.asarray(shapes).max(1, keepdims=True)
    if jitter is not None:
        shapes = shapes * jitter.uniform(0.9, 1.1, size=(shapes.shape[0], 1))
    sizes = [np.asarray(lb).reshape(-1, 5)[:, 3:5] * s for s, lb in zip(shapes, labels, strict=True)]
    return np.concatenate(sizes, 0) if sizes else np.zeros((0, 2))


def ratio_metric(anchors: torch.Tensor, wh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per (box, anchor) worst-side ratio min(r, 1/r) and per box the best over anchors."""
    r = wh[:, None] / anchors[None]
    x = torch.min(r, 1 / r).min(2)[0]
    return x, x.max(1)[0]


def recall_stats(anchors: torch.Tensor, wh: torch.Tensor, anchor_t: float) -> tuple[float, float]:
    """(best possible recall, mean anchors per box above threshold) at ratio limit ``anchor_t``."""
    x, best = ratio_metric(anchors, wh)
    return float((best > 1 / anchor_t).float().mean()), float((x > 1 / anchor_t).float().sum(1).mean())


def kmeans(points: np.ndarray, k: int, iterations: int = 30, seed: int = 0) -> np.ndarray:
    """Lloyd's k-means with k-means++ initialisation; returns the ``k`` centroids."""
    rng = np.random.default_rng(seed)
    chosen = [points[rng.integers(len(points))]]
    for _ in range(1, k):
        dist = np.min(((points[:, None] - np.asarray(chosen)[None]) ** 2).sum(-1), 1)
        chosen.append(points[rng.choice(len(points), p=dist / dist.sum())] if dist.sum() > 0 else points[0])
    centroids = np.asarray(chosen, dtype=np.float64)
    for _ in range(iterations):
        assignment = ((points[:, None] - centroids[None]) ** 2).sum(-1).argmin(1)
        for j in range(k):
            members = points[assignment == j]
            if len(members):
                centroids[j] = members.mean(0)
    return centroids


def evolve_anchors(
    wh_pixels: np.ndarray, n: int = 9, anchor_t: float = 4.0, generations: int = 1000, seed: int = 0
) -> np.ndarray:
    """k-means then genetic evolution of ``n`` anchors (pixels) on box sizes; returned sorted by area."""
    small = wh_pixels[(wh_pixels >= 2.0).any(1)].astype(np.float32)
    if len(small) < n:
        raise ValueError(f"only {len(small)} boxes of at least 2 pixels; cannot fit {n} anchors")
    std = small.std(0)
    anchors = kmeans(small / std, n, seed=seed) * std
    wh = torch.tensor(small)
    threshold = 1 / anchor_t

    def anchor_fitness(k: np.ndarray) -> float:
        _, best = ratio_metric(torch.tensor(k, dtype=torch.float32), wh)
        return float((best * (best > threshold).float()).mean())

    rng, py_rng = np.random.default_rng(seed), random.Random(seed)
    best_fitness, mutation_prob, sigma = anchor_fitness(anchors), 0.9, 0.1
    for _ in range(generations):
        v = np.ones(anchors.shape)
        while (v == 1).all():
            mutated = rng.random(anchors.shape) < mutation_prob
            v = (mutated * py_rng.random() * rng.standard_normal(anchors.shape) * sigma + 1).clip(0.3, 3.0)
        candidate = (anchors * v).clip(min=2.0)
        candidate_fitness = anchor_fitness(candidate)
        if candidate_fitness > best_fitness:
            best_fitness, anchors = candidate_fitness, candidate
    return anchors[np.argsort(anchors.prod(1))]


@torch.no_grad()
def check_anchors(dataset: Any, head: AnchorBasedHead, anchor_t: float = 4.0, img_size: int = 640,
                  generations: int = 1000, seed: int = 0) -> AnchorReport:
    """Check ``head.anchors`` (stride units) against ``dataset.shapes``/``dataset.labels``; evolve and replace if
    BPR < 0.98."""
    jitter = np.random.default_rng(seed)
    wh = torch.tensor(label_sizes(dataset.shapes, dataset.labels, img_size, jitter), dtype=torch.float32)
    stride = head.stride.view(-1, 1, 1).to(head.anchors.device)
    anchors_px = (head.anchors * stride).view(-1, 2).cpu()
    bpr, aat = recall_stats(anchors_px, wh, anchor_t)
    if bpr > BPR_THRESHOLD or len(wh) == 0:
        return AnchorReport(bpr, aat)
    try:
        evolved = evolve_anchors(label_sizes(dataset.shapes, dataset.labels, img_size),
                                 head.anchors[0].numel() // 2 * head.nl, anchor_t, generations, seed)
    except ValueError:
        return AnchorReport(bpr, aat)
    evolved_t = torch.tensor(evolved, dtype=torch.float32)
    new_bpr, _ = recall_stats(evolved_t, wh, anchor_t)
    if new_bpr <= bpr:
        return AnchorReport(bpr, aat, new_bpr, False)
    head.anchors[:] = evolved_t.to(head.anchors).view_as(head.anchors) / stride
    head.reset_grids()
    return AnchorReport(bpr, aat, new_bpr, True)
