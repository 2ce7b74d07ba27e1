"""COCO instances json: reading categories and boxes, and writing ground truth / predictions.

The format is the COCO detection format (Lin et al., ECCV 2014; cocodataset.org/#format-data):
``bbox`` = [x, y, width, height] in pixels of the original image, categories with ids that need
not be contiguous (COCO 2017: 1..90 with gaps).
"""

from __future__ import annotations

import json
import mmap
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from yolo_attn.data.labels import CheckedLabels, Row, check_rows
from yolo_attn.errors import UserError

_CATEGORIES_KEY = b'"categories"'
_CATEGORIES_WINDOW = 1 << 22  # bytes after the key; far more than any categories list


class CocoJsonError(UserError, ValueError):
    """A COCO json that cannot be used; the message names the file."""


def _load_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8-sig") as f:  # -sig: a byte-order mark is skipped
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise CocoJsonError(f"{path}: cannot read COCO json: {e}") from None
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("images"), list)
        or not isinstance(data.get("categories"), list)
    ):
        raise CocoJsonError(f"{path}: not a COCO instances json (needs 'images' and 'categories' lists)")
    return data


def _categories_from_tail(path: Path) -> list[Any] | None:
    """The ``categories`` array found by its key, without parsing the whole file (train2017 is ~450 MB)."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        at = m.rfind(_CATEGORIES_KEY)
        if at < 0:
            return None
        window = m[at + len(_CATEGORIES_KEY) : at + len(_CATEGORIES_KEY) + _CATEGORIES_WINDOW]
    text = window.decode("utf-8", errors="replace").lstrip()
    if not text.startswith(":"):
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(text[1:].lstrip())
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, list) else None


def _check_categories(categories: list[Any], path: Path) -> list[tuple[int, str]]:
    if not all(isinstance(c, dict) and isinstance(c.get("id"), int) and "name" in c for c in categories):
        raise CocoJsonError(f"{path}: every category needs an integer 'id' and a 'name'")
    pairs = sorted((c["id"], str(c["name"])) for c in categories)
    ids = [i for i, _ in pairs]
    if len(set(ids)) != len(ids):
        raise CocoJsonError(f"{path}: duplicate category ids")
    if not pairs:
        raise CocoJsonError(f"{path}: has no categories")
    return pairs


def read_categories(path: Path | str) -> list[tuple[int, str]]:
    """(category id, name) pairs in ascending id order: class ``i`` is the ``i``-th of them."""
    path = Path(path)
    if not path.is_file():
        raise CocoJsonError(f"COCO annotations not found: {path}")
    try:
        categories = _categories_from_tail(path)
        return _check_categories(categories, path) if categories is not None else _read_all_categories(path)
    except CocoJsonError:
        return _read_all_categories(path)


def _read_all_categories(path: Path) -> list[tuple[int, str]]:
    return _check_categories(_load_json(path)["categories"], path)


# Why a json entry is not used (the scan summary's names).
INCOMPLETE_IMAGE = "incomplete json entry"
INCOMPLETE_ANNOTATION = "incomplete annotation"
UNKNOWN_IMAGE = "unknown image id"
CROWD = "crowd"
_IMAGE_KEYS = ("id", "file_name", "width", "height")


@dataclass(frozen=True)
class CocoImage:
    """One image of a COCO json with its boxes checked as YOLO labels (cls, xc, yc, w, h normalised)."""

    image_id: int
    width: int
    height: int
    labels: CheckedLabels


@dataclass
class CocoLabels:
    """file_name -> :class:`CocoImage`; the image entries (``skipped``; ``skipped_files``: the file names they give)
    and annotations (``dropped``) left out, counted by reason, with a problem text for each."""

    images: dict[str, CocoImage] = field(default_factory=dict)
    skipped_files: set[str] = field(default_factory=set)
    skipped: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def leave_out(self, counter: Counter[str], reason: str, what: str) -> None:
        counter[reason] += 1
        self.problems.append(f"{what}: {reason}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _usable_image(entry: Any) -> bool:
    return (isinstance(entry, dict) and all(k in entry for k in _IMAGE_KEYS) and isinstance(entry["file_name"], str)
            and isinstance(entry["id"], (int, str)) and all(_is_number(entry[k]) and entry[k] > 0
                                                            for k in ("width", "height")))


def _box_of(annotation: Any) -> list[float] | None:
    """The annotation's ``bbox`` when it has one of four numbers, an ``image_id`` and an integer ``category_id``."""
    if not (isinstance(annotation, dict) and isinstance(annotation.get("image_id"), (int, str))
            and isinstance(annotation.get("category_id"), int)):
        return None
    box = annotation.get("bbox")
    return box if isinstance(box, list) and len(box) == 4 and all(_is_number(v) for v in box) else None


def _annotation_rows(data: dict[str, Any], class_of: dict[int, int], result: CocoLabels,
                     path: Path) -> dict[Any, list[Row]]:
    """image id -> its label rows (boxes centred and still in pixels); left-out annotations counted in ``result``."""
    rows: dict[Any, list[Row]] = {}
    annotations = data.get("annotations")
    for index, ann in enumerate(annotations if isinstance(annotations, list) else []):
        what = f"annotation {ann.get('id', f'#{index}') if isinstance(ann, dict) else f'#{index}'}"
        box = _box_of(ann)
        if box is None:
            result.leave_out(result.dropped, INCOMPLETE_ANNOTATION, what)
        elif ann.get("iscrowd", 0):  # a region COCOeval ignores, not an object (YOLOv5's conversion drops them)
            result.dropped[CROWD] += 1
        elif ann["category_id"] not in class_of:
            raise CocoJsonError(f"{path}: {what} has unknown category_id {ann['category_id']!r}")
        else:
            x, y, w, h = box
            rows.setdefault(ann["image_id"], []).append(
                Row(what, class_of[ann["category_id"]], np.array([x + w / 2, y + h / 2, w, h], dtype=np.float64)))
    return rows


def read_coco_labels(path: Path | str, class_to_category_id: list[int]) -> CocoLabels:
    """Every usable image of the json with its boxes checked (:func:`~yolo_attn.data.labels.check_rows`).

    Crowd boxes (``iscrowd``: COCOeval treats them as regions to ignore) are left out, as YOLOv5's COCO-to-YOLO
    conversion does; so are image entries and annotations missing a key, and annotations of no listed image.
    An unknown ``category_id`` stops with a :class:`CocoJsonError` (the json contradicts its own categories).
    """
    path = Path(path)
    data = _load_json(path)
    class_of = {category_id: i for i, category_id in enumerate(class_to_category_id)}
    result = CocoLabels()
    rows = _annotation_rows(data, class_of, result, path)
    for index, im in enumerate(data["images"]):
        if not _usable_image(im):
            result.leave_out(result.skipped, INCOMPLETE_IMAGE, f"image entry #{index} (needs {', '.join(_IMAGE_KEYS)})")
            if isinstance(im, dict) and isinstance(im.get("id"), (int, str)):
                rows.pop(im["id"], None)  # the boxes of a skipped image, as a YOLO image's label file: not counted
            if isinstance(im, dict) and isinstance(im.get("file_name"), str):
                result.skipped_files.add(im["file_name"])
            continue
        scale = np.array([im["width"], im["height"]] * 2, dtype=np.float64)
        image_rows = [row._replace(xywh=row.xywh / scale) for row in rows.pop(im["id"], [])]
        result.images[im["file_name"]] = CocoImage(im["id"], im["width"], im["height"],
                                                   check_rows(image_rows, len(class_to_category_id)))
    for image_id, orphans in rows.items():
        for row in orphans:
            result.leave_out(result.dropped, UNKNOWN_IMAGE, f"{row.where} (image_id {image_id!r})")
    return result


def _evaluable_annotation(annotation: Any, image_ids: set[Any], category_ids: set[int]) -> bool:
    box = _box_of(annotation)
    return (box is not None and annotation["image_id"] in image_ids and annotation["category_id"] in category_ids
            and bool(np.isfinite(box).all()) and box[2] > 0 and box[3] > 0)


def evaluable_ground_truth(path: Path | str) -> dict[str, Any] | Path:
    """The ground truth COCOeval can read: ``path`` itself when its image entries and annotations are complete,
    else its contents without the incomplete ones (the scan leaves them out too), with the ``id`` and ``area``
    COCOeval needs filled in where an annotation lacks them. Crowd boxes stay: COCOeval ignores detections on them."""
    path = Path(path)
    data = _load_json(path)
    images = [im for im in data["images"] if _usable_image(im)]
    image_ids = {im["id"] for im in images}
    category_ids = {c["id"] for c in data["categories"] if isinstance(c, dict) and isinstance(c.get("id"), int)}
    annotations_given = data.get("annotations")
    given: list[Any] = annotations_given if isinstance(annotations_given, list) else []
    kept = [a for a in given if _evaluable_annotation(a, image_ids, category_ids)]
    complete = all("id" in a and "area" in a for a in kept)
    if len(images) == len(data["images"]) and len(kept) == len(given) and complete:
        return path
    next_id = 1 + max((a["id"] for a in kept if isinstance(a.get("id"), int)), default=0)
    annotations: list[dict[str, Any]] = []
    for index, a in enumerate(kept):
        annotations.append({"id": next_id + index, "area": a["bbox"][2] * a["bbox"][3], **a})
    return {**data, "images": images, "annotations": annotations}


def image_ids_from_names(im_files: list[str]) -> list[int]:
    """COCO image ids for a YOLO-layout split: the file stems when all are distinct integers
    (COCO's own file names, as YOLOv5's ``--save-json``), else 1-based positions."""
    stems = [Path(f).stem for f in im_files]
    if all(s.isdigit() for s in stems) and len({int(s) for s in stems}) == len(stems):
        return [int(s) for s in stems]
    return list(range(1, len(im_files) + 1))


def ground_truth_json(
    image_ids: list[int],
    file_names: list[str],
    shapes: np.ndarray,
    labels: list[np.ndarray],
    class_to_category_id: list[int],
    names: list[str],
) -> dict[str, Any]:
    """A COCO instances dict from YOLO labels: pixel boxes in original image coordinates, area = w*h."""
    annotations: list[dict[str, Any]] = []
    for image_id, (width, height), lb in zip(image_ids, shapes, labels, strict=True):
        for cls, xc, yc, w, h in lb.astype(np.float64):
            bw, bh = w * width, h * height
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": class_to_category_id[int(cls)],
                    "bbox": [xc * width - bw / 2, yc * height - bh / 2, bw, bh],
                    "area": bw * bh,
                    "iscrowd": 0,
                }
            )
    return {
        "images": [
            {"id": i, "file_name": Path(f).name, "width": int(w), "height": int(h)}
            for i, f, (w, h) in zip(image_ids, file_names, shapes, strict=True)
        ],
        "annotations": annotations,
        "categories": [{"id": c, "name": n} for c, n in zip(class_to_category_id, names, strict=True)],
    }


def detections_to_json(detections: np.ndarray, image_id: int | str, class_to_category_id: list[int]
                       ) -> list[dict[str, Any]]:
    """COCO result entries from ``(n, 6)`` x1, y1, x2, y2, score, class rows in original image pixels."""
    return [
        {
            "image_id": image_id,
            "category_id": class_to_category_id[int(cls)],
            "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
            "score": round(score, 5),
        }
        for x1, y1, x2, y2, score, cls in detections.tolist()
    ]
