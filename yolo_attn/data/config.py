"""Dataset YAMLs in the YOLOv5 style (``path``, ``train``, ``val``, ``test``, ``nc``, ``names``).

Each split is either a YOLO layout (an image folder, a list file, or a list of either; labels at
``.../labels/...txt`` beside ``.../images/...``) or a COCO layout (``{images: DIR, annotations: FILE.json}``,
the shape of the official COCO download). Relative paths resolve against ``path``, and ``path``
against the YAML's folder. Nothing is ever downloaded: a missing folder is one :class:`UserError`
saying what to fetch and where to put it (the YAML's optional ``download`` text).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from yolo_attn.data.coco_json import read_categories
from yolo_attn.errors import UserError
from yolo_attn.utils.yaml_io import read_yaml_mapping

SPLIT_NAMES = ("train", "val", "test")


class DatasetConfigError(UserError, ValueError):
    """A dataset YAML (or its files) that cannot be used; the message names the file and key."""


@dataclass(frozen=True)
class SplitSource:
    """Where one split's images and labels are.

    ``layout == "yolo"``: ``sources`` are image folders and/or list files (one image path a line).
    ``layout == "coco"``: ``sources`` is the one image folder and ``annotations`` the instances json;
    COCO category ids map to contiguous classes ``0..nc-1`` in ascending id order.
    """

    name: str
    layout: Literal["yolo", "coco"]
    sources: tuple[Path, ...]
    names: tuple[str, ...] = field(repr=False)
    annotations: Path | None = None
    origin: str = ""  # "<yaml file> 'val'", for messages
    download_hint: str = ""

    @property
    def nc(self) -> int:
        return len(self.names)

    @functools.cached_property
    def class_to_category_id(self) -> list[int]:
        """Class index -> the category id of COCO-format json (ground truth and predictions).

        COCO layout: the json's category ids in ascending order. YOLO layout: the class index itself
        (what YOLOv5's ``--save-json`` writes for non-COCO data).
        """
        if self.layout == "yolo":
            return list(range(self.nc))
        return [category_id for category_id, _ in read_categories(self.annotations)]

    def check_exists(self) -> None:
        """Raise one :class:`DatasetConfigError` naming what is missing and what to download."""
        missing = [p for p in (*self.sources, self.annotations) if p is not None and not p.exists()]
        if missing:
            listed = ", ".join(str(p) for p in missing)
            hint = f" {self.download_hint.strip()}" if self.download_hint else ""
            raise DatasetConfigError(f"{self.origin}: not found: {listed}.{hint}")


@dataclass(frozen=True)
class DatasetConfig:
    """A loaded dataset YAML: resolved root, its splits (None where the YAML has none) and class names."""

    root: Path
    splits: dict[str, SplitSource | None]
    nc: int
    names: list[str]
    yaml_path: Path | None = None

    def split(self, name: str) -> SplitSource:
        """The split ``name``, checked to exist on disk."""
        source = self.splits.get(name)
        if source is None:
            present = ", ".join(k for k, v in self.splits.items() if v)
            raise DatasetConfigError(f"{self.yaml_path or 'dataset config'}: has no '{name}' split (it has: {present})")
        source.check_exists()
        return source


def _names_from_yaml(data: dict[str, Any], where: str) -> list[str] | None:
    names = data.get("names")
    if names is None:
        return None
    if isinstance(names, dict):
        keys = sorted(names)
        if keys != list(range(len(keys))):
            raise DatasetConfigError(f"{where}: 'names' keys must be the class indices 0..{len(keys) - 1}, got {keys}")
        return [str(names[k]) for k in keys]
    if isinstance(names, list):
        return [str(n) for n in names]
    raise DatasetConfigError(
        f"{where}: 'names' must be a list or a {{index: name}} mapping, got {type(names).__name__}"
    )


def _split_entry(value: Any, root: Path, name: str, where: str) -> tuple[str, tuple[Path, ...], Path | None]:
    """(layout, sources, annotations) of one split entry as written in the YAML."""
    if isinstance(value, dict):
        if set(value) != {"images", "annotations"} or not all(isinstance(v, str) for v in value.values()):
            raise DatasetConfigError(
                f"{where}: '{name}' as a mapping must be {{images: DIR, annotations: FILE.json}} (COCO layout), "
                f"got {value}"
            )
        return "coco", ((root / value["images"]).resolve(),), (root / value["annotations"]).resolve()
    entries = value if isinstance(value, list) else [value]
    if not entries or not all(isinstance(e, str) and e for e in entries):
        raise DatasetConfigError(
            f"{where}: '{name}' must be a path, a list of paths or {{images, annotations}}, got {value!r}"
        )
    return "yolo", tuple((root / e).resolve() for e in entries), None


def load_dataset_config(path_or_dict: str | Path | dict[str, Any]) -> DatasetConfig:
    """Read a dataset YAML (or an already-parsed dict, whose relative paths resolve against the cwd)."""
    if isinstance(path_or_dict, dict):
        data, yaml_path, base = dict(path_or_dict), None, Path.cwd()
    else:
        yaml_path = Path(path_or_dict).resolve()
        data = read_yaml_mapping(yaml_path, "dataset YAML with train/val/names", DatasetConfigError)
        base = yaml_path.parent
    where = str(yaml_path or "dataset config")
    root = (base / str(data["path"])).resolve() if data.get("path") else base
    download_hint = str(data.get("download") or "").strip()
    if not root.is_dir():
        hint = download_hint or "Put the dataset there or change 'path'."
        raise DatasetConfigError(f"{where}: dataset folder not found: {root} (path: {data.get('path')}). {hint}")

    entries = {k: _split_entry(data[k], root, k, where) for k in SPLIT_NAMES if data.get(k)}
    if not entries:
        raise DatasetConfigError(f"{where}: names none of the splits {', '.join(SPLIT_NAMES)}")

    names = _names_from_yaml(data, where)
    # COCO layout: names may come from the json (the val json first: it is the small one).
    coco_jsons = [e[2] for k, e in sorted(entries.items(), key=lambda kv: kv[0] != "val") if e[0] == "coco"]
    category_counts: dict[Path, int] = {}
    for coco_json in dict.fromkeys(coco_jsons):
        if coco_json.is_file():
            categories = read_categories(coco_json)
            category_counts[coco_json] = len(categories)
            if names is None:
                names = [name for _, name in categories]
    nc = data.get("nc")
    if names is None:
        if not isinstance(nc, int) or nc < 1:
            raise DatasetConfigError(f"{where}: needs 'names' (or at least 'nc')")
        names = [f"class{i}" for i in range(nc)]
    if nc is not None and nc != len(names):
        raise DatasetConfigError(f"{where}: 'nc: {nc}' but 'names' has {len(names)} entries")
    for coco_json, count in category_counts.items():
        if count != len(names):
            raise DatasetConfigError(f"{where}: {len(names)} class names but {coco_json} has {count} categories")

    splits: dict[str, SplitSource | None] = {k: None for k in SPLIT_NAMES}
    for k, (layout, sources, coco_json) in entries.items():
        splits[k] = SplitSource(
            name=k,
            layout=layout,
            sources=sources,
            names=tuple(names),
            annotations=coco_json,
            origin=f"{where} '{k}'",
            download_hint=download_hint,
        )
    return DatasetConfig(root=root, splits=splits, nc=len(names), names=list(names), yaml_path=yaml_path)
