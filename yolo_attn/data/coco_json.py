"""COCO instances json: reading categories and boxes, and writing ground truth / predictions.

The format is the COCO detection format (Lin et al., ECCV 2014; cocodataset.org/#format-data):
``bbox`` = [x, y, width, height] in pixels of the original image, categories with ids that need
not be contiguous (COCO 2017: 1..90 with gaps).
"""

from __future__ import annotations

import json
import mmap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from yolo_attn.errors import UserError

_CATEGORIES_KEY = b'"categories"'
_CATEGORIES_WINDOW = 1 << 22  # bytes after the key; far more than any categories list


class CocoJsonError(UserError, ValueError):
    """A COCO json that cannot be used; the message names the file."""


def _load_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
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


@dataclass(frozen=True)
class CocoImage:
    """One image of a COCO json with its boxes as YOLO labels (cls, xc, yc, w, h normalised)."""

    image_id: int
    width: int
    height: int
    labels: np.ndarray


def read_coco_labels(path: Path | str, class_to_category_id: list[int]) -> dict[str, CocoImage]:
    """file_name -> :class:`CocoImage` for every image of the json.

    Crowd boxes (``iscrowd``: COCOeval treats them as regions to ignore) and boxes with no area
    are left out, as YOLOv5's COCO-to-YOLO conversion does.
    """
    path = Path(path)
    data = _load_json(path)
    class_of = {category_id: i for i, category_id in enumerate(class_to_category_id)}
    boxes: dict[int, list[list[float]]] = {}
    for ann in data.get("annotations", []):
        x, y, w, h = ann["bbox"]
        if ann.get("iscrowd", 0) or w <= 0 or h <= 0:
            continue
        if ann["category_id"] not in class_of:
            raise CocoJsonError(f"{path}: annotation {ann.get('id')} has unknown category_id {ann['category_id']}")
        boxes.setdefault(ann["image_id"], []).append([class_of[ann["category_id"]], x + w / 2, y + h / 2, w, h])
    images = {}
    for im in data["images"]:
        width, height = im["width"], im["height"]
        labels = np.array(boxes.get(im["id"], []), dtype=np.float64).reshape(-1, 5)
        labels[:, [1, 3]] /= width
        labels[:, [2, 4]] /= height
        images[im["file_name"]] = CocoImage(im["id"], width, height, labels.astype(np.float32))
    return images


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
