"""Detection dataset: label scan (cached), image loading, letterbox, rectangular batches, dataloader.

Behaviour follows YOLOv5's ``LoadImagesAndLabels`` (ultralytics/yolov5, utils/dataloaders.py):
images resized so the long side is ``img_size``; with ``rect`` the images are sorted by aspect
ratio and each batch is letterboxed to its own stride-aligned shape
``ceil(shape * img_size / stride + pad) * stride``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import zipfile
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, get_worker_info

from yolo_attn.data.coco_json import image_ids_from_names, read_coco_labels
from yolo_attn.data.config import SplitSource
from yolo_attn.data.images import IMAGE_SUFFIXES, ImageSkipped, inspect_image
from yolo_attn.data.labels import CLASS_OUT_OF_RANGE, CheckedLabels, parse_label_lines
from yolo_attn.data.letterbox import letterbox
from yolo_attn.errors import UserError
from yolo_attn.utils.boxes import clip_boxes, xywh2xyxy, xyxy2xywh
from yolo_attn.utils.paths import CACHE_ENV, cache_root

LOGGER = logging.getLogger(__name__)

__all__ = ["IMAGE_SUFFIXES", "DetectionDataset", "ScanSummary", "create_dataloader", "scan_split"]

CACHE_VERSION = 2
LABEL_CLIP_EPS = 1e-3  # boxes are clipped this far inside the image before normalising (YOLOv5)
SHOWN_PROBLEMS = 10  # files whose problems are logged as warnings; the rest at debug level
ORPHAN_LABELS = "label file without an image"
NOT_IN_JSON = "image not in the json"

Shapes = tuple[tuple[int, int], tuple[tuple[float, float], tuple[float, float]]]


def single_class_names(names: Sequence[str]) -> list[str]:
    """The class names of a ``--single-cls`` run: a one-class dataset's own, else ``item`` (as YOLOv5)."""
    return list(names) if len(names) == 1 else ["item"]


def default_cache_dir() -> Path:
    """``labels`` in the cache root (:func:`~yolo_attn.utils.paths.cache_root`): outside the dataset, which may be
    read-only."""
    return cache_root() / "labels"


def label_path_for(image_path: str) -> str:
    """YOLO layout: ``.../images/.../x.jpg`` -> ``.../labels/.../x.txt`` (the last ``images`` folder)."""
    images, labels = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return os.path.splitext(labels.join(image_path.rsplit(images, 1)))[0] + ".txt"


def list_yolo_images(split: SplitSource) -> list[str]:
    """Image files of a YOLO-layout split: folders searched recursively, list files read line by line."""
    files: list[str] = []
    for source in split.sources:
        if source.is_dir():
            files += [str(p) for p in source.rglob("*") if p.is_file()]
        elif source.is_file():
            for line in source.read_text(encoding="utf-8-sig", errors="replace").splitlines():
                line = line.strip()
                if line:
                    path = Path(line)
                    files.append(str(path if path.is_absolute() else (source.parent / path).resolve()))
        else:
            raise UserError(f"{split.origin}: not found: {source}")
    images = sorted({f for f in files if os.path.splitext(f)[1].lower() in IMAGE_SUFFIXES})
    if not images:
        raise UserError(f"{split.origin}: no images found in {', '.join(map(str, split.sources))}")
    return images


def orphan_label_files(split: SplitSource, images: list[str]) -> list[str]:
    """Label files in the label folders of a YOLO split's image folders that belong to none of its images."""
    expected = {label_path_for(image) for image in images}
    orphans: set[str] = set()
    for source in split.sources:
        label_dir = Path(label_path_for(str(source / "x.jpg"))).parent
        if source.is_dir() and label_dir != source and label_dir.is_dir():
            orphans.update(str(p) for p in label_dir.rglob("*.txt") if str(p) not in expected)
    return sorted(orphans)


def _by_reason(counter: Counter[str]) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in sorted(counter.items()))


@dataclass
class ScanSummary:
    """What the label scan found: images with labels, without a label file (``missing``), with no boxes
    (``empty``), and counted by reason: images ``skipped``, label rows ``dropped``, rows ``repaired``, images
    ``converted`` while loading, files ``ignored``; ``messages``: one text per file with a problem."""

    found: int = 0
    missing: int = 0
    empty: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    repaired: Counter[str] = field(default_factory=Counter)
    converted: Counter[str] = field(default_factory=Counter)
    ignored: Counter[str] = field(default_factory=Counter)
    messages: list[str] = field(default_factory=list)

    COUNTERS: ClassVar[tuple[str, ...]] = ("skipped", "dropped", "repaired", "converted", "ignored")
    # how the summary line names the counters after ``skipped`` (images)
    SHOWN_AS: ClassVar[dict[str, str]] = {"dropped": "labels dropped", "repaired": "labels repaired",
                                          "converted": "images converted", "ignored": "files ignored"}

    @property
    def corrupt(self) -> int:
        """Images skipped, whatever the reason."""
        return sum(self.skipped.values())

    def merge(self, other: ScanSummary) -> None:
        """Add ``other``'s counts and messages to these."""
        self.found += other.found
        self.missing += other.missing
        self.empty += other.empty
        for name in self.COUNTERS:
            getattr(self, name).update(getattr(other, name))
        self.messages += other.messages

    def line(self, prefix: str = "") -> str:
        """The one summary line train and val print: every image accounted for, every change by reason."""
        total = self.found + self.missing + self.empty + self.corrupt
        text = (f"{prefix}scanned {total} images: {self.found} with labels, {self.missing} label files missing, "
                f"{self.empty} empty, {self.corrupt} skipped")
        text += f" ({_by_reason(self.skipped)})" if self.corrupt else ""
        for name, shown in self.SHOWN_AS.items():
            counter = getattr(self, name)
            if counter:
                text += f"; {shown} {sum(counter.values())} ({_by_reason(counter)})"
        return text


@dataclass
class ScannedSplit:
    """The usable images of a split with their labels (n, 5: cls, xc, yc, w, h normalised) and sizes (w, h)."""

    im_files: list[str]
    labels: list[np.ndarray]
    shapes: np.ndarray
    image_ids: list[int]
    summary: ScanSummary


class ImageScan(NamedTuple):
    """One image's scan: (w, h) or None when it is skipped, its labels, and its share of the summary."""

    size: tuple[int, int] | None
    labels: np.ndarray
    summary: ScanSummary


def _no_labels() -> np.ndarray:
    return np.zeros((0, 5), np.float32)


def _image_scan(image: str, checked: CheckedLabels | None, label_file: str) -> ImageScan:
    """Check ``image`` and account for its ``checked`` labels (None: no label file) in a one-image summary."""
    summary = ScanSummary()
    try:
        info = inspect_image(image)
    except ImageSkipped as e:
        summary.skipped[e.reason] += 1
        summary.messages.append(f"{image}: image skipped: {e}")
        return ImageScan(None, _no_labels(), summary)
    summary.converted.update(info.conversions)
    if checked is None:
        summary.missing = 1
        return ImageScan(info.size, _no_labels(), summary)
    summary.dropped.update(checked.dropped)
    summary.repaired.update(checked.repaired)
    if checked.problems:
        summary.messages.append(f"{label_file}: {'; '.join(checked.problems)}")
    summary.found, summary.empty = (1, 0) if len(checked.labels) else (0, 1)
    return ImageScan(info.size, checked.labels, summary)


def _scan_yolo_image(args: tuple[str, int]) -> ImageScan:
    """Check one YOLO-layout image and read its label file (``nc`` bounds the class column)."""
    image, nc = args
    label_file = label_path_for(image)
    if not os.path.isfile(label_file):
        return _image_scan(image, None, label_file)
    with open(label_file, encoding="utf-8", errors="replace") as f:
        return _image_scan(image, parse_label_lines(f.read(), nc), label_file)


def _scan_coco_image(args: tuple[str, CheckedLabels, str]) -> ImageScan:
    """Check one COCO-layout image; its labels come from the json."""
    image, labels, annotations = args
    return _image_scan(image, labels, annotations)


def _stat_signature(paths: list[str]) -> str:
    h = hashlib.sha1()
    for p in paths:
        try:
            st = os.stat(p)
            h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}\0-\n".encode())
    return h.hexdigest()


def _cache_file(split: SplitSource, cache_dir: Path) -> Path:
    identity = f"{split.layout}|{'|'.join(map(str, split.sources))}|{split.annotations}"
    return cache_dir / f"{hashlib.sha1(identity.encode()).hexdigest()[:20]}.cache"


def _write_cache(path: Path, key: str, scan: ScannedSplit) -> None:
    """Plain arrays through ``np.savez`` (no pickled objects), written to a temp file and renamed into place."""
    s = scan.summary
    reasons = [(name, reason, n) for name in ScanSummary.COUNTERS for reason, n in getattr(s, name).items()]
    arrays: dict[str, Any] = {
        "version": np.array(CACHE_VERSION),
        "key": np.array(key),
        "im_files": np.array(scan.im_files, dtype=str),
        "shapes": scan.shapes.astype(np.int64).reshape(-1, 2),
        "image_ids": np.array(scan.image_ids, dtype=np.int64),
        "label_counts": np.array([len(lb) for lb in scan.labels], dtype=np.int64),
        "labels": np.concatenate(scan.labels, 0) if scan.labels else _no_labels(),
        "counts": np.array([s.found, s.missing, s.empty], dtype=np.int64),
        "reasons": np.array([f"{name}\t{reason}" for name, reason, _ in reasons], dtype=str),
        "reason_counts": np.array([n for _, _, n in reasons], dtype=np.int64),
        "messages": np.array(s.messages, dtype=str),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except OSError as e:
        LOGGER.warning(f"label cache not saved ({path}: {e}); set {CACHE_ENV} to a writable folder")


def _read_cache(path: Path, key: str) -> ScannedSplit | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            if int(z["version"]) != CACHE_VERSION or str(z["key"]) != key:
                return None
            counts = z["label_counts"]
            labels = np.split(z["labels"].astype(np.float32), np.cumsum(counts)[:-1]) if len(counts) else []
            found, missing, empty = (int(x) for x in z["counts"])
            summary = ScanSummary(found, missing, empty, messages=[str(m) for m in z["messages"]])
            for entry, n in zip(z["reasons"], z["reason_counts"], strict=True):
                name, reason = str(entry).split("\t")
                getattr(summary, name)[reason] = int(n)
            return ScannedSplit(
                im_files=[str(f) for f in z["im_files"]],
                labels=[lb.reshape(-1, 5) for lb in labels],
                shapes=z["shapes"].astype(np.int64).reshape(-1, 2),
                image_ids=[int(i) for i in z["image_ids"]],
                summary=summary,
            )
    except (OSError, KeyError, ValueError, EOFError, AttributeError, zipfile.BadZipFile):  # absent, stale, damaged
        return None


def _scan_items(split: SplitSource,
                yolo_images: list[str] | None) -> tuple[list[Any], Any, ScanSummary, dict[str, int]]:
    """(items to scan, the scanner, the summary of what the json left out, COCO image ids by path)."""
    summary = ScanSummary()
    if split.layout != "coco" or split.annotations is None:
        return [(image, split.nc) for image in yolo_images or []], _scan_yolo_image, summary, {}
    coco = read_coco_labels(split.annotations, split.class_to_category_id)
    summary.skipped.update(coco.skipped)
    summary.dropped.update(coco.dropped)
    if coco.problems:
        summary.messages.append(f"{split.annotations}: {'; '.join(coco.problems)}")
    folder = split.sources[0]
    items = sorted((str(folder / name), entry.labels, str(split.annotations)) for name, entry in coco.images.items())
    listed = {image for image, *_ in items} | {str(folder / name) for name in coco.skipped_files}
    unlisted = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and str(p) not in listed]
    if unlisted:
        summary.ignored[NOT_IN_JSON] = len(unlisted)
    image_ids = {str(folder / name): entry.image_id for name, entry in coco.images.items()}
    return items, _scan_coco_image, summary, image_ids


def _check_classes(split: SplitSource, summary: ScanSummary) -> None:
    """Stop when labels name classes the dataset YAML does not have (training would silently lose them)."""
    count = summary.dropped[CLASS_OUT_OF_RANGE]
    if count:
        example = next(m for m in summary.messages if CLASS_OUT_OF_RANGE in m)
        raise UserError(
            f"{split.origin}: {count} labels have a class id outside 0..{split.nc - 1} (first: {example}); "
            f"the dataset YAML's 'nc'/'names' ({split.nc} classes) must cover every class id of the labels"
        )


def _scan(split: SplitSource, yolo_images: list[str] | None) -> ScannedSplit:
    """Check every image (and YOLO label file) with a few threads; unusable images are left out, counted."""
    items, scanner, summary, coco_ids = _scan_items(split, yolo_images)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        results = list(pool.map(scanner, items))
    kept, labels, shapes = [], [], []
    for result, (image, *_) in zip(results, items, strict=True):
        summary.merge(result.summary)
        if result.size is not None:
            kept.append(image)
            labels.append(result.labels)
            shapes.append(result.size)
    _check_classes(split, summary)
    image_ids = [coco_ids[image] for image in kept] if split.layout == "coco" else image_ids_from_names(kept)
    return ScannedSplit(kept, labels, np.array(shapes, dtype=np.int64).reshape(-1, 2), image_ids, summary)


def _log_messages(messages: list[str], prefix: str) -> None:
    """The first :data:`SHOWN_PROBLEMS` file problems as warnings, the rest at debug level (``--verbose``)."""
    for index, message in enumerate(messages):
        LOGGER.log(logging.WARNING if index < SHOWN_PROBLEMS else logging.DEBUG, f"{prefix}{message}")
    if len(messages) > SHOWN_PROBLEMS:
        LOGGER.warning(f"{prefix}{len(messages) - SHOWN_PROBLEMS} more files with problems (--verbose lists them)")


def scan_split(split: SplitSource, cache_dir: Path | str | None = None, prefix: str = "") -> ScannedSplit:
    """Images and labels of ``split``, from the label cache while the files' sizes and mtimes are unchanged.

    The cache (``<cache_dir>/<hash of the split's paths>.cache``) is keyed on the stats of every
    image and label file (COCO layout: the json and the image folder's files).
    """
    yolo_images, orphans = None, []
    if split.layout == "coco":
        with os.scandir(split.sources[0]) as entries:
            key_files = [str(split.annotations)] + sorted(e.path for e in entries)
    else:
        yolo_images = list_yolo_images(split)
        orphans = orphan_label_files(split, yolo_images)
        key_files = [p for f in yolo_images for p in (f, label_path_for(f))]
    key = f"{split.nc}|{_stat_signature(key_files)}"
    cache = _cache_file(split, Path(cache_dir) if cache_dir else default_cache_dir())
    scan = _read_cache(cache, key)
    if scan is None:
        scan = _scan(split, yolo_images)
        _write_cache(cache, key, scan)
    if orphans:
        scan.summary.ignored[ORPHAN_LABELS] = len(orphans)
    _log_messages(scan.summary.messages, prefix)
    LOGGER.info(scan.summary.line(prefix))
    if not scan.im_files:
        raise UserError(f"{split.origin}: no usable images ({scan.summary.line()})")
    return scan


def rect_batch_shapes(
    shapes: np.ndarray, batch_size: int, img_size: int, stride: int, pad: float
) -> tuple[np.ndarray, np.ndarray]:
    """YOLOv5's rectangular batching: (order sorting images by aspect ratio h/w, (n_batches, 2) h, w shapes).

    Each batch gets the smallest shape holding its images at ``img_size`` on the long side, widened by
    ``pad`` strides and rounded up to a multiple of ``stride``.
    """
    aspect = shapes[:, 1] / shapes[:, 0]
    order = aspect.argsort()
    aspect = aspect[order]
    batch_index = np.arange(len(shapes)) // batch_size
    n_batches = int(batch_index[-1]) + 1 if len(shapes) else 0
    relative = np.ones((n_batches, 2))
    for b in range(n_batches):
        lo, hi = aspect[batch_index == b].min(), aspect[batch_index == b].max()
        if hi < 1:
            relative[b] = hi, 1
        elif lo > 1:
            relative[b] = 1, 1 / lo
    return order, np.ceil(relative * img_size / stride + pad).astype(int) * stride


class DetectionDataset(Dataset):
    """Images and YOLO labels of one split, letterboxed for the model.

    ``labels[i]``: (n, 5) float32 ``cls, xc, yc, w, h`` normalised to the original image;
    ``shapes``: (N, 2) original (w, h); ``image_ids``: COCO image ids (the json's, or from file names).
    Items are not augmented: :class:`~yolo_attn.data.augment.TrainDataset` adds that in ``__getitem__``
    (building the sample with :meth:`load_letterboxed` and :meth:`format_item`) and sets ``augment``.
    ``rng``: the generator every random draw of the items comes from (``seed``: an int, or a generator to share);
    a loader worker reseeds its copy (:meth:`reseed`).
    """

    augment = False  # resize with INTER_LINEAR and let the letterbox scale up, as YOLOv5 does when augmenting

    def __init__(
        self,
        split: SplitSource,
        img_size: int = 640,
        batch_size: int = 16,
        rect: bool = False,
        stride: int = 32,
        pad: float = 0.0,
        prefix: str = "",
        cache_dir: Path | str | None = None,
        seed: int | np.random.Generator = 0,
        single_cls: bool = False,
    ):
        split.check_exists()
        self.split = split
        self.rng = np.random.default_rng(seed)
        self.img_size = img_size
        self.rect = rect
        self.stride = stride
        scan = scan_split(split, cache_dir, prefix)
        self.summary = scan.summary
        self.im_files, self.labels, self.shapes, self.image_ids = (
            scan.im_files,
            scan.labels,
            scan.shapes,
            scan.image_ids,
        )
        if single_cls:  # every box of class 0 (YOLOv5's --single-cls)
            self.labels = [np.column_stack([np.zeros(len(lb), np.float32), lb[:, 1:]]) for lb in self.labels]
            self.split = replace(split, names=tuple(single_class_names(split.names)))
        self.ram_images: list[tuple[np.ndarray, tuple[int, int], tuple[int, int]]] | None = None
        self.disk_cache: Path | None = None
        self.batch_index = np.arange(len(self.im_files)) // batch_size
        self.batch_shapes: np.ndarray | None = None
        if rect:
            order, self.batch_shapes = rect_batch_shapes(self.shapes, batch_size, img_size, stride, pad)
            self.im_files = [self.im_files[i] for i in order]
            self.labels = [self.labels[i] for i in order]
            self.image_ids = [self.image_ids[i] for i in order]
            self.shapes = self.shapes[order]

    def __len__(self) -> int:
        return len(self.im_files)

    def reseed(self, seed: int) -> None:
        """Draw from a new generator seeded with ``seed`` (a loader worker's own stream)."""
        self.rng = np.random.default_rng(seed)

    def cache_images(self, mode: str) -> None:
        """YOLOv5's ``--cache``. ``ram``: every image decoded and resized now and kept (loader workers started later
        share the copy); ``disk``: each image decoded once into a ``.npy`` file under ``images`` in the cache root
        (named after its path, size and mtime) and read from there."""
        if mode == "disk":
            self.disk_cache = cache_root() / "images"
            self.disk_cache.mkdir(parents=True, exist_ok=True)
        elif mode == "ram":
            with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
                self.ram_images = list(pool.map(self.load_image, range(len(self))))
            size = sum(image.nbytes for image, _, _ in self.ram_images)
            LOGGER.info(f"cached {len(self)} images in RAM ({size / 2**30:.2f} GiB)")
        else:
            raise UserError(f"--cache {mode!r}: use ram or disk")

    def read_image(self, i: int) -> np.ndarray:
        """BGR image ``i`` as stored (from the disk cache when there is one)."""
        path = self.im_files[i]
        cached = None
        if self.disk_cache is not None:
            stat = os.stat(path)
            key = hashlib.sha1(f"{os.path.abspath(path)}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()
            cached = self.disk_cache / f"{key[:24]}.npy"
            if cached.is_file():
                return np.load(cached)
        image = cv2.imread(path)
        if image is None:
            raise UserError(f"cannot read image {path}")
        if cached is not None:
            tmp = cached.with_name(f"{cached.name}.{os.getpid()}.tmp.npy")
            np.save(tmp, image)
            os.replace(tmp, cached)
        return image

    def load_image(self, i: int) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
        """BGR image ``i`` resized so its long side is ``img_size``: (image, (h0, w0), (h, w))."""
        if self.ram_images is not None:
            return self.ram_images[i]
        image = self.read_image(i)
        h0, w0 = image.shape[:2]
        r = self.img_size / max(h0, w0)
        if r != 1:
            interpolation = cv2.INTER_LINEAR if (self.augment or r > 1) else cv2.INTER_AREA
            image = cv2.resize(image, (math.ceil(w0 * r), math.ceil(h0 * r)), interpolation=interpolation)
        return image, (h0, w0), image.shape[:2]

    def load_letterboxed(self, i: int) -> tuple[np.ndarray, np.ndarray, Shapes]:
        """Image ``i`` letterboxed to its batch shape (or ``img_size`` square), labels as ``cls, x1, y1, x2, y2``
        pixels of that image, and ``((h0, w0), ((h / h0, w / w0), (pad_w, pad_h)))`` for mapping boxes back."""
        image, (h0, w0), (h, w) = self.load_image(i)
        shape = self.batch_shapes[self.batch_index[i]] if self.batch_shapes is not None else self.img_size
        image, ratio, pad = letterbox(image, shape, auto=False, scale_up=self.augment)
        labels = self.labels[i].copy()
        if len(labels):
            labels[:, 1:] = xywh2xyxy(labels[:, 1:]) * np.array([ratio[0] * w, ratio[1] * h] * 2, dtype=np.float32)
            labels[:, [1, 3]] += pad[0]
            labels[:, [2, 4]] += pad[1]
        return image, labels, ((h0, w0), ((h / h0, w / w0), pad))

    def format_item(self, image: np.ndarray, labels: np.ndarray, i: int, shapes: Shapes | None):
        """(CHW RGB uint8 tensor, (n, 6) ``0, cls, xc, yc, w, h`` normalised to ``image``, path, shapes)."""
        h, w = image.shape[:2]
        labels_out = torch.zeros((len(labels), 6))
        if len(labels):
            boxes = clip_boxes(labels[:, 1:5].astype(np.float32), (h - LABEL_CLIP_EPS, w - LABEL_CLIP_EPS))
            labels_out[:, 1] = torch.from_numpy(labels[:, 0])
            labels_out[:, 2:] = torch.from_numpy(xyxy2xywh(boxes) / np.array([w, h, w, h], dtype=np.float32))
        chw_rgb = np.ascontiguousarray(image.transpose(2, 0, 1)[::-1])
        return torch.from_numpy(chw_rgb), labels_out, self.im_files[i], shapes

    def __getitem__(self, i: int):
        image, labels, shapes = self.load_letterboxed(i)
        return self.format_item(image, labels, i, shapes)

    @staticmethod
    def collate_fn(batch):
        """Stack images; concatenate targets with column 0 set to the image's index in the batch."""
        images, labels, paths, shapes = zip(*batch, strict=True)
        for index, lb in enumerate(labels):
            lb[:, 0] = index
        return torch.stack(images, 0), torch.cat(labels, 0), paths, shapes


def image_weights(labels: list[np.ndarray], nc: int, class_maps: np.ndarray | None = None) -> np.ndarray:
    """YOLOv5's ``--image-weights``: each class weighs the inverse of its box count times ``(1 - its mAP)^2``
    (``class_maps``, none: all 0); an image weighs the sum over its boxes. Returns one weight per image."""
    classes = [lb[:, 0].astype(int) for lb in labels]
    counts = np.bincount(np.concatenate(classes) if classes else np.zeros(0, int), minlength=nc).astype(float)
    class_weights = 1.0 / np.where(counts == 0, 1.0, counts)
    class_weights *= (1.0 - (np.zeros(nc) if class_maps is None else np.asarray(class_maps))) ** 2
    return np.array([class_weights[c].sum() for c in classes])


class WeightedImageSampler(Sampler[int]):
    """An epoch of ``len(weights)`` image indices drawn with replacement in proportion to ``weights`` (set them
    between epochs; the sampler runs in the main process, so loader workers need not know). :meth:`set_epoch` seeds
    the draw with (``seed``, epoch): a resumed run draws what the uninterrupted one did."""

    def __init__(self, weights: np.ndarray, seed: int = 0):
        self.weights = np.asarray(weights, dtype=float)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.weights)

    def __iter__(self) -> Iterator[int]:
        total = self.weights.sum()
        p = self.weights / total if total > 0 else None
        rng = np.random.default_rng((self.seed, self.epoch))
        return iter(rng.choice(len(self.weights), size=len(self.weights), p=p).tolist())


def _init_worker(worker_id: int) -> None:
    """Reseed the worker's copy of the dataset from torch's per-worker seed (drawn from the loader's generator:
    the run's seed, epoch and rank, plus the worker id); keep OpenCV single-threaded inside workers."""
    cv2.setNumThreads(0)
    info = get_worker_info()
    assert info is not None and isinstance(info.dataset, DetectionDataset)  # a worker of create_dataloader's loader
    info.dataset.reseed(info.seed)


def create_dataloader(
    dataset: DetectionDataset, batch_size: int, workers: int = 8, shuffle: bool = False, seed: int = 0, rank: int = -1,
    sampler: Sampler[int] | None = None,
) -> DataLoader:
    """A DataLoader over ``dataset``; DistributedSampler when ``rank != -1``, ``sampler`` (one process) when given.

    Worker count: at most ``workers``, the batch size and the CPUs per CUDA device (YOLOv5's rule); without
    CUDA, half the CPUs, since the model runs on the others (2 cores: one worker beside the main process).
    ``rect`` batches are fixed, so they are never shuffled.
    """
    if dataset.rect and shuffle:
        LOGGER.warning("rect batches cannot be shuffled; shuffle=False")
        shuffle = False
    batch_size = min(batch_size, len(dataset))
    cuda_devices = torch.cuda.device_count()
    cpus = (os.cpu_count() or 1) // cuda_devices if cuda_devices else (os.cpu_count() or 1) // 2
    num_workers = min(cpus, batch_size if batch_size > 1 else 0, workers)
    if sampler is None and rank != -1:
        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed)
    generator = torch.Generator()
    generator.manual_seed(seed + max(rank, 0))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        num_workers=num_workers,
        sampler=sampler,
        pin_memory=torch.cuda.is_available(),
        collate_fn=type(dataset).collate_fn,
        worker_init_fn=_init_worker,
        generator=generator,
        persistent_workers=num_workers > 0,
    )
