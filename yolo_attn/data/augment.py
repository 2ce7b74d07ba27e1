"""Training augmentation: mosaic (4 and 9 images), random perspective, HSV jitter, flips and mixup.

The recipe and its hyperparameter names are YOLOv5's (ultralytics/yolov5 ``utils/augmentations.py``,
``utils/dataloaders.py``); mosaic follows YOLOv4 (Bochkovskiy et al. 2020), mixup Zhang et al. (ICLR 2018).
Labels inside this module are ``(n, 5)`` arrays of (class, x1, y1, x2, y2) in pixels. Every random draw comes
from the ``rng`` passed in (:class:`TrainDataset`: its own generator), never from process-wide state.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from yolo_attn.data.dataset import DetectionDataset
from yolo_attn.data.letterbox import PAD_COLOR
from yolo_attn.utils.boxes import xywh2xyxy

# OpenCV's own thread pool competes with the DataLoader workers and torch's threads (YOLOv5 disables it too).
cv2.setNumThreads(0)


def augment_hsv(image: np.ndarray, rng: np.random.Generator, hgain: float = 0.5, sgain: float = 0.5,
                vgain: float = 0.5) -> None:
    """Jitter hue, saturation and value of a BGR uint8 image in place by random gains in [1 - g, 1 + g]."""
    if not (hgain or sgain or vgain):
        return
    gains = rng.uniform(-1, 1, 3) * [hgain, sgain, vgain] + 1
    hue, sat, val = cv2.split(cv2.cvtColor(image, cv2.COLOR_BGR2HSV))
    x = np.arange(0, 256, dtype=gains.dtype)
    lut_hue = ((x * gains[0]) % 180).astype(image.dtype)
    lut_sat = np.clip(x * gains[1], 0, 255).astype(image.dtype)
    lut_val = np.clip(x * gains[2], 0, 255).astype(image.dtype)
    merged = cv2.merge((cv2.LUT(hue, lut_hue), cv2.LUT(sat, lut_sat), cv2.LUT(val, lut_val)))
    cv2.cvtColor(merged, cv2.COLOR_HSV2BGR, dst=image)


def box_candidates(
    before: np.ndarray, after: np.ndarray, wh_thr: float = 2, ar_thr: float = 100, area_thr: float = 0.1, eps=1e-16
) -> np.ndarray:
    """Boxes (xyxy, shape (4, n)) that survive a warp: > wh_thr px wide and high, > area_thr of their area, sane
    aspect."""
    w1, h1 = before[2] - before[0], before[3] - before[1]
    w2, h2 = after[2] - after[0], after[3] - after[1]
    aspect = np.maximum(w2 / (h2 + eps), h2 / (w2 + eps))
    return (w2 > wh_thr) & (h2 > wh_thr) & (w2 * h2 / (w1 * h1 + eps) > area_thr) & (aspect < ar_thr)


def random_perspective(
    image: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
    degrees: float = 10,
    translate: float = 0.1,
    scale: float = 0.1,
    shear: float = 10,
    perspective: float = 0.0,
    border: tuple[int, int] = (0, 0),
) -> tuple[np.ndarray, np.ndarray]:
    """Random rotation, scale, shear, translation and perspective of an image and its xyxy labels.

    ``border`` (negative for mosaic) crops the output by that many pixels on each side.
    """
    height, width = image.shape[0] + border[0] * 2, image.shape[1] + border[1] * 2
    centre = np.eye(3)
    centre[0, 2], centre[1, 2] = -image.shape[1] / 2, -image.shape[0] / 2
    persp = np.eye(3)
    persp[2, 0], persp[2, 1] = rng.uniform(-perspective, perspective), rng.uniform(-perspective, perspective)
    rotation = np.eye(3)
    scale_gain = rng.uniform(1 - scale, 1 + scale)
    rotation[:2] = cv2.getRotationMatrix2D(angle=rng.uniform(-degrees, degrees), center=(0, 0), scale=scale_gain)
    shearing = np.eye(3)
    shearing[0, 1] = math.tan(rng.uniform(-shear, shear) * math.pi / 180)
    shearing[1, 0] = math.tan(rng.uniform(-shear, shear) * math.pi / 180)
    translation = np.eye(3)
    translation[0, 2] = rng.uniform(0.5 - translate, 0.5 + translate) * width
    translation[1, 2] = rng.uniform(0.5 - translate, 0.5 + translate) * height
    matrix = translation @ shearing @ rotation @ persp @ centre
    if border[0] or border[1] or (matrix != np.eye(3)).any():
        if perspective:
            image = cv2.warpPerspective(image, matrix, dsize=(width, height), borderValue=PAD_COLOR)
        else:
            image = cv2.warpAffine(image, matrix[:2], dsize=(width, height), borderValue=PAD_COLOR)
    n = len(labels)
    if n:
        corners = np.ones((n * 4, 3))
        corners[:, :2] = labels[:, [1, 2, 3, 4, 1, 4, 3, 2]].reshape(n * 4, 2)
        corners = corners @ matrix.T
        corners = (corners[:, :2] / corners[:, 2:3] if perspective else corners[:, :2]).reshape(n, 8)
        x, y = corners[:, [0, 2, 4, 6]], corners[:, [1, 3, 5, 7]]
        boxes = np.stack((x.min(1), y.min(1), x.max(1), y.max(1)), 1)
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
        keep = box_candidates(labels[:, 1:5].T * scale_gain, boxes.T, area_thr=0.10)
        labels = labels[keep]
        labels[:, 1:5] = boxes[keep]
    return image, labels


def mixup(image: np.ndarray, labels: np.ndarray, image2: np.ndarray, labels2: np.ndarray, rng: np.random.Generator):
    """Blend two images with a Beta(32, 32) ratio and keep both label sets (Zhang et al., ICLR 2018)."""
    ratio = rng.beta(32.0, 32.0)
    blended = (image * ratio + image2 * (1 - ratio)).astype(np.uint8)
    return blended, np.concatenate((labels, labels2), 0)


def flip(image: np.ndarray, labels: np.ndarray, rng: np.random.Generator, hyp: dict[str, Any]) -> np.ndarray:
    """Random up-down / left-right flips of an image and its (cls, x1, y1, x2, y2) pixel labels (in place)."""
    h, w = image.shape[:2]
    if rng.random() < hyp.get("flipud", 0.0):
        image = np.flipud(image)
        labels[:, [2, 4]] = h - labels[:, [4, 2]]
    if rng.random() < hyp.get("fliplr", 0.0):
        image = np.fliplr(image)
        labels[:, [1, 3]] = w - labels[:, [3, 1]]
    return image


def mosaic_quadrant(i: int, xc: int, yc: int, w: int, h: int, s: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Canvas (x1, y1, x2, y2) and source crop of tile ``i`` (top-left, top-right, bottom-left, bottom-right)."""
    if i == 0:
        canvas = (max(xc - w, 0), max(yc - h, 0), xc, yc)
        crop = (w - (canvas[2] - canvas[0]), h - (canvas[3] - canvas[1]), w, h)
    elif i == 1:
        canvas = (xc, max(yc - h, 0), min(xc + w, s * 2), yc)
        crop = (0, h - (canvas[3] - canvas[1]), min(w, canvas[2] - canvas[0]), h)
    elif i == 2:
        canvas = (max(xc - w, 0), yc, xc, min(s * 2, yc + h))
        crop = (w - (canvas[2] - canvas[0]), 0, w, min(canvas[3] - canvas[1], h))
    else:
        canvas = (xc, yc, min(xc + w, s * 2), min(s * 2, yc + h))
        crop = (0, 0, min(w, canvas[2] - canvas[0]), min(canvas[3] - canvas[1], h))
    return canvas, crop


def mosaic9_placement(i: int, s: int, w: int, h: int, first: tuple[int, int], previous: tuple[int, int]):
    """Canvas (x1, y1, x2, y2) of tile ``i`` of a 3x3 mosaic: centre first, then clockwise from the top."""
    (h0, w0), (hp, wp) = first, previous
    return [
        (s, s, s + w, s + h),
        (s, s - h, s + w, s),
        (s + wp, s - h, s + wp + w, s),
        (s + w0, s, s + w0 + w, s + h),
        (s + w0, s + hp, s + w0 + w, s + hp + h),
        (s + w0 - w, s + h0, s + w0, s + h0 + h),
        (s + w0 - wp - w, s + h0, s + w0 - wp, s + h0 + h),
        (s - w, s + h0 - h, s, s + h0),
        (s - w, s + h0 - hp - h, s, s + h0 - hp),
    ][i]


class TrainDataset(DetectionDataset):
    """A :class:`DetectionDataset` whose items are augmented as YOLOv5 trains (mosaic, perspective, HSV, flips, mixup).

    Hyp keys used: mosaic, mosaic9 (share of mosaics that use 9 images, ours, default 0), mixup,
    degrees, translate, scale, shear, perspective, hsv_h/s/v, flipud, fliplr. Set :attr:`mosaic` to
    False to close mosaic (last epochs). Every draw comes from :attr:`rng` (``seed=``, see
    :class:`~yolo_attn.data.dataset.DetectionDataset`).
    """

    def __init__(self, *args: Any, hyp: dict[str, Any] | None = None, augment: bool = True, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.augment = augment
        self.hyp = dict(hyp or {})
        self.mosaic = bool(self.augment and not self.rect and self.hyp.get("mosaic", 0) > 0)
        self.mosaic_border = (-self.img_size // 2, -self.img_size // 2)

    def __getitem__(self, index: int):
        if not self.augment:
            return super().__getitem__(index)
        hyp, rng = self.hyp, self.rng
        if self.mosaic and rng.random() < hyp["mosaic"]:
            image, labels = self.load_mosaic(index)
            if rng.random() < hyp.get("mixup", 0.0):
                image, labels = mixup(image, labels, *self.load_mosaic(int(rng.integers(len(self.labels)))), rng)
        else:
            image, labels, _ = self.load_letterboxed(index)
            image, labels = self.warp(image, labels)
        augment_hsv(image, rng, hyp.get("hsv_h", 0.0), hyp.get("hsv_s", 0.0), hyp.get("hsv_v", 0.0))
        image = flip(image, labels, rng, hyp)
        return self.format_item(image, labels, index, None)

    def warp(self, image: np.ndarray, labels: np.ndarray, border: tuple[int, int] = (0, 0)):
        hyp = self.hyp
        return random_perspective(
            image,
            labels,
            self.rng,
            degrees=hyp.get("degrees", 0.0),
            translate=hyp.get("translate", 0.0),
            scale=hyp.get("scale", 0.0),
            shear=hyp.get("shear", 0.0),
            perspective=hyp.get("perspective", 0.0),
            border=border,
        )

    def pixel_labels(self, index: int, w: int, h: int, padw: float, padh: float) -> np.ndarray:
        """Labels of image ``index`` as (cls, x1, y1, x2, y2) pixels in a (w, h) placement offset by the padding."""
        labels = np.asarray(self.labels[index], dtype=np.float32).reshape(-1, 5).copy()
        if len(labels):
            scale, shift = np.array([w, h, w, h], np.float32), np.array([padw, padh] * 2, np.float32)
            labels[:, 1:] = xywh2xyxy(labels[:, 1:]) * scale + shift
        return labels

    def mosaic_indices(self, index: int, others: int) -> list[int]:
        """``index`` and ``others`` random images (with replacement), in random order: a mosaic's tiles."""
        indices = [index, *self.rng.integers(len(self.labels), size=others).tolist()]
        self.rng.shuffle(indices)
        return indices

    def load_mosaic(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """A 4-image (or, with probability ``hyp['mosaic9']``, 9-image) mosaic, warped and cropped to 2s -> s."""
        if self.rng.random() < self.hyp.get("mosaic9", 0.0):
            return self.load_mosaic9(index)
        s = self.img_size
        yc, xc = (int(self.rng.uniform(-x, 2 * s + x)) for x in self.mosaic_border)
        indices = self.mosaic_indices(index, 3)
        canvas_image = None
        all_labels = []
        for i, idx in enumerate(indices):
            image, _, (h, w) = self.load_image(idx)
            if canvas_image is None:
                canvas_image = np.full((s * 2, s * 2, image.shape[2]), PAD_COLOR[0], dtype=np.uint8)
            (x1a, y1a, x2a, y2a), (x1b, y1b, x2b, y2b) = mosaic_quadrant(i, xc, yc, w, h, s)
            canvas_image[y1a:y2a, x1a:x2a] = image[y1b:y2b, x1b:x2b]
            all_labels.append(self.pixel_labels(idx, w, h, x1a - x1b, y1a - y1b))
        labels = np.concatenate(all_labels, 0)
        labels[:, 1:] = labels[:, 1:].clip(0, 2 * s)
        assert canvas_image is not None  # made at the first of the four images
        return self.warp(canvas_image, labels, border=self.mosaic_border)

    def load_mosaic9(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """A 3x3 mosaic around image ``index``, randomly cropped to 2s then warped to s."""
        s = self.img_size
        indices = self.mosaic_indices(index, 8)
        canvas_image = None
        all_labels = []
        first = previous = (-1, -1)
        for i, idx in enumerate(indices):
            image, _, (h, w) = self.load_image(idx)
            if canvas_image is None:
                canvas_image = np.full((s * 3, s * 3, image.shape[2]), PAD_COLOR[0], dtype=np.uint8)
                first = (h, w)
            place = mosaic9_placement(i, s, w, h, first, previous)
            padx, pady = place[:2]
            x1, y1, x2, y2 = (max(v, 0) for v in place)
            canvas_image[y1:y2, x1:x2] = image[y1 - pady :, x1 - padx :][: y2 - y1, : x2 - x1]
            all_labels.append(self.pixel_labels(idx, w, h, padx, pady))
            previous = (h, w)
        yc, xc = (int(self.rng.uniform(0, s)) for _ in self.mosaic_border)
        assert canvas_image is not None  # made at the first of the nine images
        canvas_image = canvas_image[yc : yc + 2 * s, xc : xc + 2 * s]
        labels = np.concatenate(all_labels, 0)
        labels[:, [1, 3]] -= xc
        labels[:, [2, 4]] -= yc
        labels[:, 1:] = labels[:, 1:].clip(0, 2 * s)
        return self.warp(canvas_image, labels, border=self.mosaic_border)
