"""Dataset YAML loading: YOLO and COCO layouts, path resolution, names, and the errors users see."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from yolo_attn.data.coco_json import _categories_from_tail, read_categories
from yolo_attn.data.config import DatasetConfigError, load_dataset_config
from yolo_attn.errors import UserError


def _write(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data) if path.suffix == ".yaml" else json.dumps(data))
    return path


def _coco_json(path: Path, category_ids=(1, 3, 7), categories_first=False) -> Path:
    categories = [{"id": i, "name": f"cat{i}"} for i in reversed(category_ids)]
    body = {"images": [{"id": 1, "file_name": "a.jpg", "width": 20, "height": 10}], "annotations": []}
    data = {"categories": categories, **body} if categories_first else {**body, "categories": categories}
    return _write(path, data)


def test_yolo_layout_from_shared_coco128(shared):
    config = load_dataset_config(shared / "data/coco128/coco128.yaml")
    val = config.splits["val"]
    assert config.nc == 80 and config.names[0] == "person" and config.names[-1] == "toothbrush"
    assert config.splits["test"] is None
    assert val.layout == "yolo" and val.sources == ((shared / "data/coco128/images/train2017").resolve(),)
    assert val.class_to_category_id == list(range(80))


def test_coco_layout_takes_names_and_category_ids_from_the_json(shared):
    config = load_dataset_config(shared / "data/coco128/coco128-coco.yaml")
    val = config.splits["val"]
    assert val.layout == "coco" and config.nc == 80
    assert config.names[:3] == ["person", "bicycle", "car"]
    ids = val.class_to_category_id
    assert ids[:12] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13] and ids[-1] == 90 and ids == sorted(ids)


def test_paths_resolve_against_path_and_path_against_the_yaml_folder(tmp_path):
    root = tmp_path / "sets" / "mine"
    (root / "images" / "a").mkdir(parents=True)
    (root / "lists").mkdir()
    (root / "lists" / "val.txt").write_text("../images/a/x.jpg\n")
    cfg = _write(
        tmp_path / "cfg" / "d.yaml",
        {
            "path": "../sets/mine",
            "train": ["images/a", "lists/val.txt"],
            "val": "lists/val.txt",
            "names": {0: "a", 1: "b"},
        },
    )
    config = load_dataset_config(cfg)
    assert config.root == root.resolve()
    assert config.splits["train"].sources == ((root / "images/a").resolve(), (root / "lists/val.txt").resolve())
    assert config.names == ["a", "b"] and config.nc == 2


def test_a_dict_resolves_against_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "imgs").mkdir()
    monkeypatch.chdir(tmp_path)
    config = load_dataset_config({"val": "imgs", "nc": 2})
    assert config.splits["val"].sources == ((tmp_path / "imgs").resolve(),)
    assert config.names == ["class0", "class1"]


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"val": "x", "nc": 3, "names": ["a", "b"]}, ["nc: 3", "2 entries"]),
        ({"val": "x", "names": {0: "a", 2: "b"}}, ["'names' keys"]),
        ({"val": {"images": "x"}, "names": ["a"]}, ["'val'", "annotations"]),
        ({"val": 5, "names": ["a"]}, ["'val'"]),
        ({"names": ["a"]}, ["none of the splits"]),
        ({"val": "x"}, ["'names'"]),
    ],
)
def test_bad_yaml_names_the_file_and_key(tmp_path, data, words):
    cfg = _write(tmp_path / "bad.yaml", data)
    with pytest.raises(DatasetConfigError) as e:
        load_dataset_config(cfg)
    assert str(cfg) in str(e.value) and all(w in str(e.value) for w in words)
    assert isinstance(e.value, UserError)


def test_names_must_match_the_coco_categories(tmp_path):
    _coco_json(tmp_path / "ann.json")
    cfg = _write(tmp_path / "d.yaml", {"val": {"images": "im", "annotations": "ann.json"}, "names": ["a", "b"]})
    with pytest.raises(DatasetConfigError, match="2 class names but .*ann.json has 3 categories"):
        load_dataset_config(cfg)


def test_missing_dataset_folder_is_one_message_with_the_download_hint(tmp_path):
    cfg = _write(
        tmp_path / "d.yaml", {"path": "../nowhere", "val": "images", "names": ["a"], "download": "Get it from X."}
    )
    with pytest.raises(DatasetConfigError) as e:
        load_dataset_config(cfg)
    message = str(e.value)
    assert "dataset folder not found" in message and str((tmp_path.parent / "nowhere").resolve()) in message
    assert message.endswith("Get it from X.") and "\n" not in message


def test_shipped_coco_yaml_describes_the_official_download(tmp_path):
    """data/coco.yaml: val2017/, train2017/, annotations/ under one folder; a missing split says what to download."""
    shipped = yaml.safe_load((ROOT / "data/coco.yaml").read_text())
    assert shipped["val"] == {"images": "val2017", "annotations": "annotations/instances_val2017.json"}
    assert shipped["train"] == {"images": "train2017", "annotations": "annotations/instances_train2017.json"}
    assert len(shipped["names"]) == shipped["nc"] == 80
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    cfg = _write(tmp_path / "coco.yaml", {**shipped, "path": "coco"})
    config = load_dataset_config(cfg)
    with pytest.raises(DatasetConfigError) as e:
        config.split("val")
    assert str(root / "val2017") in str(e.value) and "val2017.zip" in str(e.value)
    with pytest.raises(DatasetConfigError, match="has no 'test' split"):
        config.split("test")


@pytest.mark.parametrize("categories_first", [False, True])
def test_read_categories_sorts_by_id_wherever_the_key_is(tmp_path, categories_first):
    path = _coco_json(tmp_path / "ann.json", categories_first=categories_first)
    assert read_categories(path) == [(1, "cat1"), (3, "cat3"), (7, "cat7")]


def test_categories_fast_path_matches_a_full_parse(shared):
    path = shared / "data/coco128/annotations/instances_train2017.json"
    full = json.loads(path.read_text())["categories"]
    assert _categories_from_tail(path) == full
