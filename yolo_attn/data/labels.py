"""Detection labels as datasets hold them: YOLO label text and COCO boxes checked row by row, each dropped or
repaired row counted under a named reason (:data:`DROP_REASONS`, :data:`REPAIR_REASONS`).

Rows are ``cls, xc, yc, w, h`` with the box normalised to the image (YOLOv5's label format). A row is dropped when
it cannot be a box (non-finite, no size, wholly outside the image, a non-integer class); a box reaching past the
image is clipped to it and a segmentation polygon is replaced by its extent (YOLOv5 does both).
A class id beyond the dataset's classes is not dropped but reported: the dataset YAML and the labels disagree, and
the scan stops (:data:`CLASS_OUT_OF_RANGE`).
"""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple

import numpy as np

# Why a label row is dropped (the scan summary's names).
NOT_NUMBERS = "not numbers"
COLUMNS = "wrong number of values"
BAD_CLASS = "class id not an integer >= 0"
CLASS_OUT_OF_RANGE = "class id >= nc"
NON_FINITE = "non-finite value"
NO_SIZE = "zero or negative size"
OUTSIDE = "outside the image"
DUPLICATE = "duplicate"
DROP_REASONS = (NOT_NUMBERS, COLUMNS, BAD_CLASS, CLASS_OUT_OF_RANGE, NON_FINITE, NO_SIZE, OUTSIDE, DUPLICATE)
# What is repaired in a row that is kept.
POLYGON = "polygon as box"
CLIPPED = "clipped to the image"
BYTE_ORDER_MARK = "byte-order mark"
REPAIR_REASONS = (POLYGON, CLIPPED, BYTE_ORDER_MARK)

CLIP_TOLERANCE = 1e-3  # a box edge this far outside the image is rounding, clipped without counting
BOM = "\ufeff"


class CheckedRow(NamedTuple):
    """A row kept (``row`` is its ``cls, xc, yc, w, h``; ``note`` a repair reason or None) or dropped (``row`` is
    None and ``note`` the reason)."""

    row: list[float] | None
    note: str | None


def check_box(cls: float, xywh: np.ndarray, nc: int) -> CheckedRow:
    """Check one ``cls`` and normalised ``xc, yc, w, h`` box: clip it to the image, or drop it with its reason."""
    if not (np.isfinite(cls) and np.isfinite(xywh).all()):
        return CheckedRow(None, NON_FINITE)
    if not (float(cls).is_integer() and cls >= 0):
        return CheckedRow(None, BAD_CLASS)
    if cls >= nc:
        return CheckedRow(None, CLASS_OUT_OF_RANGE)
    xc, yc, w, h = (float(v) for v in xywh)
    if w <= 0 or h <= 0:
        return CheckedRow(None, NO_SIZE)
    corners = np.array([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2])
    clipped = corners.clip(0, 1)
    x1, y1, x2, y2 = clipped
    if x2 <= x1 or y2 <= y1:
        return CheckedRow(None, OUTSIDE)
    note = CLIPPED if np.abs(corners - clipped).max() > CLIP_TOLERANCE else None
    return CheckedRow([float(cls), (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], note)


class CheckedLabels(NamedTuple):
    """The rows kept as an ``(n, 5)`` float32 array, the counts of dropped and repaired rows by reason, and one
    problem text per dropped row (``line 3: class id >= nc (7)``)."""

    labels: np.ndarray
    dropped: Counter[str]
    repaired: Counter[str]
    problems: list[str]


def _deduplicated(rows: list[list[float]], dropped: Counter[str], problems: list[str]) -> np.ndarray:
    labels = np.array(rows, dtype=np.float32).reshape(-1, 5)
    _, first = np.unique(labels, axis=0, return_index=True)
    if len(first) < len(labels):
        dropped[DUPLICATE] += len(labels) - len(first)
        problems.append(f"{len(labels) - len(first)} duplicate rows")
        labels = labels[np.sort(first)]
    return labels


class Row(NamedTuple):
    """A label row before its check: where it is (``line 3``, ``annotation 17``: problems name it), its class and
    normalised ``xc, yc, w, h``, and what reading it already repaired (:data:`POLYGON`) or None."""

    where: str
    cls: float
    xywh: np.ndarray
    repaired: str | None = None


def check_rows(rows: list[Row], nc: int) -> CheckedLabels:
    """Check each row with :func:`check_box`, then drop duplicates."""
    kept: list[list[float]] = []
    dropped: Counter[str] = Counter()
    repaired: Counter[str] = Counter()
    problems: list[str] = []
    for row in rows:
        checked = check_box(row.cls, row.xywh, nc)
        if checked.row is None:
            reason = str(checked.note)
            dropped[reason] += 1
            shown = f" ({row.cls:g})" if reason == CLASS_OUT_OF_RANGE else ""
            problems.append(f"{row.where}: {reason}{shown}")
            continue
        repaired.update(note for note in (row.repaired, checked.note) if note)
        kept.append(checked.row)
    return CheckedLabels(_deduplicated(kept, dropped, problems), dropped, repaired, problems)


def parse_label_lines(text: str, nc: int) -> CheckedLabels:
    """YOLO label text checked row by row. A line is ``cls xc yc w h`` (normalised), or ``cls x1 y1 x2 y2 x3 y3
    ...`` (a segmentation polygon, boxed by its extent); a leading byte-order mark is removed."""
    rows: list[Row] = []
    dropped: Counter[str] = Counter()
    repaired: Counter[str] = Counter()
    problems: list[str] = []
    if text.startswith(BOM):
        text = text[len(BOM):]
        repaired[BYTE_ORDER_MARK] += 1
    for number, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            values = np.array([float(v) for v in parts])
        except ValueError:
            dropped[NOT_NUMBERS] += 1
            problems.append(f"line {number}: {NOT_NUMBERS}")
            continue
        coords, polygon = values[1:], len(values) > 5 and len(values) % 2 == 1
        if polygon:  # cls x1 y1 x2 y2 x3 y3 ...: the polygon's extent
            xy = coords.reshape(-1, 2)
            (x1, y1), (x2, y2) = xy.min(0), xy.max(0)
            coords = np.array([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1])
        if len(coords) != 4:
            dropped[COLUMNS] += 1
            problems.append(f"line {number}: {COLUMNS} ({len(parts)}; cls xc yc w h has 5)")
            continue
        rows.append(Row(f"line {number}", float(values[0]), coords, POLYGON if polygon else None))
    checked = check_rows(rows, nc)
    return CheckedLabels(checked.labels, dropped + checked.dropped, repaired + checked.repaired,
                         problems + checked.problems)
