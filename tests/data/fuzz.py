"""A seeded generator of broken detection datasets for the data-fuzz tests.

:func:`make_fuzz_set` writes a small clean dataset (random images, one to three boxes each, three classes) in the YOLO
or the COCO layout; each :data:`CORRUPTIONS` entry then breaks one file the set's generator picks, in one of the ways
real datasets arrive broken, and returns what the scan must report: a count under a named reason, or a ``UserError``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import yaml
from PIL import Image

from yolo_attn.data.images import EXIF_ORIENTATION

NAMES = ["red", "green", "blue"]
CATEGORY_IDS = [1, 3, 7]  # COCO layout: non-contiguous ids, as COCO's own


@dataclass(frozen=True)
class Expect:
    """What the scan of the corrupted split must show: ``count`` more under ``reason`` in the summary counter
    ``counter`` (``skipped``, ``dropped``, ``repaired``, ``converted``, ``ignored``), ``count`` more images in
    ``missing`` / ``empty``, nothing changed (``same``), or a ``UserError`` containing ``reason`` (``error``)."""

    counter: str
    reason: str = ""
    count: int = 1


@dataclass
class FuzzSet:
    """A generated dataset; ``used`` holds the images a corruption already took (each takes a fresh one)."""

    root: Path
    layout: str
    rng: np.random.Generator
    used: set[Path] = field(default_factory=set)

    @property
    def yaml_path(self) -> Path:
        return self.root / "data.yaml"

    def image_dir(self, split: str) -> Path:
        return self.root / "images" / split

    def label_file(self, image: Path) -> Path:
        return self.root / "labels" / image.parent.name / f"{image.stem}.txt"

    def json_path(self, split: str) -> Path:
        return self.root / "annotations" / f"instances_{split}.json"

    def read_json(self, split: str) -> dict:
        return json.loads(self.json_path(split).read_text(encoding="utf-8"))

    def write_json(self, split: str, data: dict) -> None:
        self.json_path(split).write_text(json.dumps(data), encoding="utf-8")

    def pick_image(self, split: str) -> Path:
        """A random image of ``split`` no corruption has touched yet."""
        free = sorted(p for p in self.image_dir(split).iterdir() if p not in self.used)
        image = free[int(self.rng.integers(len(free)))]
        self.used.add(image)
        return image

    def image_entry(self, split: str, data: dict, image: Path) -> dict:
        return next(im for im in data["images"] if im["file_name"] == image.name)

    def annotations_of(self, data: dict, image_id: int) -> list[dict]:
        return [a for a in data["annotations"] if a["image_id"] == image_id]


def _random_boxes(rng: np.random.Generator) -> np.ndarray:
    """1-3 rows ``cls, xc, yc, w, h`` well inside the image (no clipping, no duplicates)."""
    n = int(rng.integers(1, 4))
    centres, sizes = rng.uniform(0.3, 0.7, (n, 2)), rng.uniform(0.1, 0.4, (n, 2))
    return np.column_stack([rng.integers(0, len(NAMES), n), centres, sizes])


def _write_yolo_labels(fs: FuzzSet, image: Path, boxes: np.ndarray) -> None:
    label = fs.label_file(image)
    label.parent.mkdir(parents=True, exist_ok=True)
    label.write_text("".join(f"{int(c)} {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n" for c, x, y, w, h in boxes))


def _coco_annotations(boxes: np.ndarray, image_id: int, width: int, height: int, first_id: int) -> list[dict]:
    annotations = []
    for k, (c, x, y, w, h) in enumerate(boxes):
        bw, bh = w * width, h * height
        annotations.append({"id": first_id + k, "image_id": image_id, "category_id": CATEGORY_IDS[int(c)],
                            "bbox": [x * width - bw / 2, y * height - bh / 2, bw, bh], "area": bw * bh, "iscrowd": 0})
    return annotations


def _write_split(fs: FuzzSet, split: str, count: int) -> None:
    fs.image_dir(split).mkdir(parents=True)
    data: dict = {"images": [], "annotations": [],
                  "categories": [{"id": i, "name": n} for i, n in zip(CATEGORY_IDS, NAMES, strict=True)]}
    for index in range(count):
        height, width = (int(v) for v in fs.rng.integers(32, 81, 2))
        image = fs.image_dir(split) / f"{split}_{index:03d}.jpg"
        cv2.imwrite(str(image), fs.rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        boxes = _random_boxes(fs.rng)
        if fs.layout == "yolo":
            _write_yolo_labels(fs, image, boxes)
        else:
            data["images"].append({"id": index + 1, "file_name": image.name, "width": width, "height": height})
            data["annotations"] += _coco_annotations(boxes, index + 1, width, height, len(data["annotations"]) + 1)
    if fs.layout == "coco":
        fs.json_path(split).parent.mkdir(exist_ok=True)
        fs.write_json(split, data)


def make_fuzz_set(root: Path, layout: str, seed: int, n_train: int = 6, n_val: int = 3) -> FuzzSet:
    """A clean dataset of ``n_train`` + ``n_val`` random JPEGs (32-80 px sides) with labels, and its YAML."""
    fs = FuzzSet(root, layout, np.random.default_rng(seed))
    root.mkdir(parents=True)
    for split, count in (("train", n_train), ("val", n_val)):
        _write_split(fs, split, count)
    splits = {split: f"images/{split}" if layout == "yolo" else
              {"images": f"images/{split}", "annotations": f"annotations/instances_{split}.json"}
              for split in ("train", "val")}
    fs.yaml_path.write_text(yaml.safe_dump({"path": str(root), **splits, "names": NAMES}))
    return fs


def listed_images(fs: FuzzSet, split: str) -> int:
    """The images a split lists: files with image suffixes (YOLO) or entries of the json (COCO)."""
    if fs.layout == "yolo":
        return sum(1 for p in fs.image_dir(split).iterdir() if p.suffix.lower() in {".jpg", ".png"})
    data = json.loads(fs.json_path(split).read_text(encoding="utf-8-sig"))
    return len(data["images"])


# -- image corruptions (both layouts) ---------------------------------------------------------------------------------

def _renamed(fs: FuzzSet, split: str, image: Path, target: Path) -> None:
    """Follow an image's new name in its label file's name (YOLO) or its json entry (COCO)."""
    fs.used.add(target)
    if fs.layout == "yolo":
        fs.label_file(image).rename(fs.label_file(target))
    else:
        data = fs.read_json(split)
        fs.image_entry(split, data, image)["file_name"] = target.name
        fs.write_json(split, data)


def _replace_image(fs: FuzzSet, split: str, write: Callable[[Path, np.ndarray], None], suffix: str = ".jpg") -> None:
    """Rewrite a picked image through ``write(path, rgb array)``, renaming it (and its json entry) to ``suffix``."""
    image = fs.pick_image(split)
    rgb = cv2.imread(str(image))[..., ::-1].copy()
    target = image.with_suffix(suffix)
    image.unlink()
    write(target, rgb)
    if target.name != image.name:
        _renamed(fs, split, image, target)


def _truncate(fs: FuzzSet, path: Path, low: float, high: float) -> None:
    """Cut ``path`` to a random fraction in ``low..high`` of its length (an interrupted download or copy)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fs.rng.uniform(low, high))])


def truncated_jpeg(fs: FuzzSet, split: str) -> Expect:
    _truncate(fs, fs.pick_image(split), 0.7, 0.9)  # the headers stay whole: only the end marker is missing
    return Expect("skipped", "truncated")


def truncated_png(fs: FuzzSet, split: str) -> Expect:
    def write(path: Path, rgb: np.ndarray) -> None:
        cv2.imwrite(str(path), rgb)
        _truncate(fs, path, 0.3, 0.9)

    _replace_image(fs, split, write, ".png")
    return Expect("skipped", "broken")


def zero_byte_image(fs: FuzzSet, split: str) -> Expect:
    fs.pick_image(split).write_bytes(b"")
    return Expect("skipped", "empty file")


def text_as_image(fs: FuzzSet, split: str) -> Expect:
    fs.pick_image(split).write_text("this is not a JPEG\n" * int(fs.rng.integers(1, 50)))
    return Expect("skipped", "not an image")


def random_bytes_as_image(fs: FuzzSet, split: str) -> Expect:
    fs.pick_image(split).write_bytes(fs.rng.integers(0, 256, int(fs.rng.integers(10, 4000)), dtype=np.uint8).tobytes())
    return Expect("skipped", "not an image")


def tiny_image(fs: FuzzSet, split: str) -> Expect:
    cv2.imwrite(str(fs.pick_image(split)), fs.rng.integers(0, 256, (5, 7, 3), dtype=np.uint8))
    return Expect("skipped", "too small")


def png_16_bit(fs: FuzzSet, split: str) -> Expect:
    _replace_image(fs, split, lambda p, rgb: cv2.imwrite(str(p), rgb[..., ::-1].astype(np.uint16) * 257), ".png")
    return Expect("converted", "16-bit")


def png_16_bit_gray(fs: FuzzSet, split: str) -> Expect:
    _replace_image(fs, split, lambda p, rgb: cv2.imwrite(str(p), rgb[..., 0].astype(np.uint16) * 257), ".png")
    return Expect("converted", "16-bit")


def png_alpha(fs: FuzzSet, split: str) -> Expect:
    def write(path: Path, rgb: np.ndarray) -> None:
        Image.fromarray(np.dstack([rgb, fs.rng.integers(0, 256, rgb.shape[:2], dtype=np.uint8)]), "RGBA").save(path)

    _replace_image(fs, split, write, ".png")
    return Expect("converted", "alpha channel")


def grayscale_jpeg(fs: FuzzSet, split: str) -> Expect:
    _replace_image(fs, split, lambda p, rgb: Image.fromarray(rgb).convert("L").save(p))
    return Expect("converted", "grayscale")


def cmyk_jpeg(fs: FuzzSet, split: str) -> Expect:
    _replace_image(fs, split, lambda p, rgb: Image.fromarray(rgb).convert("CMYK").save(p))
    return Expect("converted", "CMYK")


def exif_rotated_jpeg(fs: FuzzSet, split: str) -> Expect:
    def write(path: Path, rgb: np.ndarray) -> None:
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = int(fs.rng.choice([3, 6, 8]))
        Image.fromarray(rgb).save(path, exif=exif)

    _replace_image(fs, split, write)
    return Expect("converted", "EXIF rotation")


def non_ascii_name(fs: FuzzSet, split: str) -> Expect:
    image = fs.pick_image(split)
    target = image.with_name(f"straße_日本_{image.stem}.jpg")
    image.rename(target)
    _renamed(fs, split, image, target)
    return Expect("same")


IMAGE_CORRUPTIONS = [truncated_jpeg, truncated_png, zero_byte_image, text_as_image, random_bytes_as_image, tiny_image,
                     png_16_bit, png_16_bit_gray, png_alpha, grayscale_jpeg, cmyk_jpeg, exif_rotated_jpeg,
                     non_ascii_name]


# -- YOLO label files -------------------------------------------------------------------------------------------------

def _edit_label(fs: FuzzSet, split: str, edit: Callable[[list[str]], list[str]]) -> None:
    label = fs.label_file(fs.pick_image(split))
    label.write_text("".join(f"{line}\n" for line in edit(label.read_text().splitlines())))


def _add_line(fs: FuzzSet, split: str, line: str) -> None:
    """Append ``line`` (``{x}``: a random value in 0.3..0.7) to a picked label file."""
    _edit_label(fs, split, lambda lines: [*lines, line.format(x=f"{fs.rng.uniform(0.3, 0.7):.4f}")])


def _yolo_line_case(name: str, line: str, expect: Expect) -> Callable[[FuzzSet, str], Expect]:
    """A corruption adding ``line`` to a label file."""
    def case(fs: FuzzSet, split: str) -> Expect:
        _add_line(fs, split, line)
        return expect

    case.__name__ = name
    return case


YOLO_LINE_CASES = [
    _yolo_line_case("nan_coordinate", "0 nan {x} 0.1 0.1", Expect("dropped", "non-finite value")),
    _yolo_line_case("inf_size", "1 {x} 0.5 inf 0.1", Expect("dropped", "non-finite value")),
    _yolo_line_case("negative_size", "1 {x} 0.5 -0.2 0.1", Expect("dropped", "zero or negative size")),
    _yolo_line_case("zero_size", "2 {x} 0.5 0.2 0", Expect("dropped", "zero or negative size")),
    _yolo_line_case("partly_outside", "2 0.95 {x} 0.3 0.2", Expect("repaired", "clipped to the image")),
    _yolo_line_case("negative_centre", "0 -0.05 {x} 0.3 0.2", Expect("repaired", "clipped to the image")),
    _yolo_line_case("wholly_outside", "2 1.5 {x} 0.2 0.2", Expect("dropped", "outside the image")),
    _yolo_line_case("extra_column", "0 {x} 0.5 0.2 0.2 0.9", Expect("dropped", "wrong number of values")),
    _yolo_line_case("missing_column", "0 {x} 0.5 0.2", Expect("dropped", "wrong number of values")),
    _yolo_line_case("class_name_not_id", "person {x} 0.5 0.2 0.2", Expect("dropped", "not numbers")),
    _yolo_line_case("fractional_class", "1.5 {x} 0.5 0.2 0.2", Expect("dropped", "class id not an integer >= 0")),
    _yolo_line_case("negative_class", "-1 {x} 0.5 0.2 0.2", Expect("dropped", "class id not an integer >= 0")),
    _yolo_line_case("polygon", "1 0.2 0.3 {x} 0.25 0.6 0.7 0.3 0.65", Expect("repaired", "polygon as box")),
    _yolo_line_case("class_id_beyond_nc", "7 {x} 0.5 0.2 0.2", Expect("error", "class id outside 0..2")),
]


def duplicate_line(fs: FuzzSet, split: str) -> Expect:
    _edit_label(fs, split, lambda lines: [*lines, lines[int(fs.rng.integers(len(lines)))]])
    return Expect("dropped", "duplicate")


def byte_order_mark(fs: FuzzSet, split: str) -> Expect:
    label = fs.label_file(fs.pick_image(split))
    label.write_bytes(b"\xef\xbb\xbf" + label.read_bytes())
    return Expect("repaired", "byte-order mark")


def windows_line_endings(fs: FuzzSet, split: str) -> Expect:
    label = fs.label_file(fs.pick_image(split))
    label.write_bytes(label.read_bytes().replace(b"\n", b"\r\n"))
    return Expect("same")


def binary_line(fs: FuzzSet, split: str) -> Expect:
    # UTF-8 continuation bytes only: each decodes to one replacement character, none to a line break
    garbage = fs.rng.integers(0x80, 0xC0, int(fs.rng.integers(20, 200)), dtype=np.uint8).tobytes()
    label = fs.label_file(fs.pick_image(split))
    label.write_bytes(label.read_bytes() + garbage + b"\n")
    return Expect("dropped", "not numbers")


def empty_label_file(fs: FuzzSet, split: str) -> Expect:
    fs.label_file(fs.pick_image(split)).write_text("")
    return Expect("empty")


def image_without_label(fs: FuzzSet, split: str) -> Expect:
    fs.label_file(fs.pick_image(split)).unlink()
    return Expect("missing")


def label_without_image(fs: FuzzSet, split: str) -> Expect:
    fs.pick_image(split).unlink()
    return Expect("ignored", "label file without an image")


def yaml_nc_below_class_ids(fs: FuzzSet, split: str) -> Expect:
    _add_line(fs, split, "2 {x} 0.5 0.2 0.2")
    fs.yaml_path.write_text(fs.yaml_path.read_text().replace("- green\n- blue\n", ""))
    return Expect("error", "class id outside 0..0")


def yaml_bom_and_crlf(fs: FuzzSet, split: str) -> Expect:
    fs.yaml_path.write_bytes(b"\xef\xbb\xbf" + fs.yaml_path.read_bytes().replace(b"\n", b"\r\n"))
    return Expect("same")


YOLO_CORRUPTIONS = [*YOLO_LINE_CASES, duplicate_line, byte_order_mark, windows_line_endings, binary_line,
                    empty_label_file, image_without_label, label_without_image, yaml_nc_below_class_ids,
                    yaml_bom_and_crlf]


# -- COCO json --------------------------------------------------------------------------------------------------------

def _edit_annotation(fs: FuzzSet, split: str, edit: Callable[[dict, dict], None]) -> None:
    """A copy of one annotation of a picked image, changed by ``edit(copy, image entry)``, added to the json (the
    image keeps its good boxes, so that only the copy is counted)."""
    image = fs.pick_image(split)
    data = fs.read_json(split)
    entry = fs.image_entry(split, data, image)
    annotations = fs.annotations_of(data, entry["id"])
    copy = {**annotations[int(fs.rng.integers(len(annotations)))], "id": 20_000 + len(data["annotations"])}
    edit(copy, entry)
    data["annotations"].append(copy)
    fs.write_json(split, data)


def _coco_box_case(name: str, box: Callable[[dict], list], expect: Expect) -> Callable[[FuzzSet, str], Expect]:
    """A corruption setting one annotation's bbox to ``box(image entry)``."""
    def case(fs: FuzzSet, split: str) -> Expect:
        _edit_annotation(fs, split, lambda ann, im: ann.update(bbox=box(im)))
        return expect

    case.__name__ = name
    return case


COCO_BOX_CASES = [
    _coco_box_case("nan_bbox", lambda im: [float("nan"), 2, 5, 5], Expect("dropped", "non-finite value")),
    _coco_box_case("negative_width", lambda im: [5, 2, -5, 5], Expect("dropped", "zero or negative size")),
    _coco_box_case("zero_height", lambda im: [5, 2, 5, 0], Expect("dropped", "zero or negative size")),
    _coco_box_case("partly_outside", lambda im: [im["width"] - 5, 2, 20, 5],
                   Expect("repaired", "clipped to the image")),
    _coco_box_case("wholly_outside", lambda im: [im["width"] + 5, 2, 5, 5], Expect("dropped", "outside the image")),
    _coco_box_case("three_number_bbox", lambda im: [5, 2, 5], Expect("dropped", "incomplete annotation")),
    _coco_box_case("string_bbox", lambda im: "5 2 5 5", Expect("dropped", "incomplete annotation")),
]


def annotation_without_bbox(fs: FuzzSet, split: str) -> Expect:
    _edit_annotation(fs, split, lambda ann, im: ann.pop("bbox"))
    return Expect("dropped", "incomplete annotation")


def crowd_box(fs: FuzzSet, split: str) -> Expect:
    _edit_annotation(fs, split, lambda ann, im: ann.update(iscrowd=1))
    return Expect("dropped", "crowd")


def unknown_category(fs: FuzzSet, split: str) -> Expect:
    _edit_annotation(fs, split, lambda ann, im: ann.update(category_id=99))
    return Expect("error", "unknown category_id 99")


def duplicate_annotation(fs: FuzzSet, split: str) -> Expect:
    _edit_annotation(fs, split, lambda ann, im: None)  # the same box under another id
    return Expect("dropped", "duplicate")


def annotation_of_no_image(fs: FuzzSet, split: str) -> Expect:
    data = fs.read_json(split)
    data["annotations"].append({**data["annotations"][0], "id": 10_001, "image_id": 999})
    fs.write_json(split, data)
    return Expect("dropped", "unknown image id")


def image_entry_without_size(fs: FuzzSet, split: str) -> Expect:
    image = fs.pick_image(split)
    data = fs.read_json(split)
    fs.image_entry(split, data, image).pop(str(fs.rng.choice(["width", "height"])))
    fs.write_json(split, data)
    return Expect("skipped", "incomplete json entry")


def image_file_missing(fs: FuzzSet, split: str) -> Expect:
    fs.pick_image(split).unlink()
    return Expect("skipped", "file missing")


def image_not_in_json(fs: FuzzSet, split: str) -> Expect:
    image = fs.pick_image(split)
    data = fs.read_json(split)
    entry = fs.image_entry(split, data, image)
    data["images"].remove(entry)
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != entry["id"]]
    fs.write_json(split, data)
    return Expect("ignored", "image not in the json")


def image_without_annotations(fs: FuzzSet, split: str) -> Expect:
    image = fs.pick_image(split)
    data = fs.read_json(split)
    image_id = fs.image_entry(split, data, image)["id"]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != image_id]
    fs.write_json(split, data)
    return Expect("empty")


def json_without_annotations(fs: FuzzSet, split: str) -> Expect:
    data = fs.read_json(split)
    del data["annotations"]
    fs.write_json(split, data)
    return Expect("empty", count=len(data["images"]))


def json_without_images(fs: FuzzSet, split: str) -> Expect:
    data = fs.read_json(split)
    del data["images"]
    fs.write_json(split, data)
    return Expect("error", "not a COCO instances json")


def json_without_categories(fs: FuzzSet, split: str) -> Expect:
    data = fs.read_json(split)
    del data["categories"]
    fs.write_json(split, data)
    return Expect("error", "'categories'")


def truncated_json(fs: FuzzSet, split: str) -> Expect:
    _truncate(fs, fs.json_path(split), 0.2, 0.95)
    return Expect("error", "cannot read COCO json")


def json_bom_and_crlf(fs: FuzzSet, split: str) -> Expect:
    path = fs.json_path(split)
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(fs.read_json(split), indent=1).encode().replace(b"\n", b"\r\n"))
    return Expect("same")


def yaml_fewer_names_than_categories(fs: FuzzSet, split: str) -> Expect:
    fs.yaml_path.write_text(fs.yaml_path.read_text().replace("- blue\n", ""))
    return Expect("error", "2 class names but")


COCO_CORRUPTIONS = [*COCO_BOX_CASES, annotation_without_bbox, crowd_box, unknown_category, duplicate_annotation,
                    annotation_of_no_image, image_entry_without_size, image_file_missing, image_not_in_json,
                    image_without_annotations, json_without_annotations, json_without_images, json_without_categories,
                    truncated_json, json_bom_and_crlf, yaml_fewer_names_than_categories, yaml_bom_and_crlf]

CORRUPTIONS: dict[str, list[Callable[[FuzzSet, str], Expect]]] = {
    "yolo": [*IMAGE_CORRUPTIONS, *YOLO_CORRUPTIONS],
    "coco": [*IMAGE_CORRUPTIONS, *COCO_CORRUPTIONS],
}
# Corruptions of a whole file or of the YAML: not combined with others on one set (each changes every image or stops).
WHOLE_SET = {"yaml_nc_below_class_ids", "yaml_bom_and_crlf", "class_id_beyond_nc", "unknown_category",
             "json_without_annotations", "json_without_images", "json_without_categories", "truncated_json",
             "json_bom_and_crlf", "yaml_fewer_names_than_categories"}
