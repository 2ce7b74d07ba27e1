"""The built-in demo dataset: written once, YOLO layout, labels exactly on the drawn shapes."""

from __future__ import annotations

import cv2
import numpy as np

from yolo_attn.data import synthetic
from yolo_attn.data.config import load_dataset_config
from yolo_attn.data.dataset import default_cache_dir
from yolo_attn.data.synthetic import DEMO_COLORS, DEMO_NAMES, draw_shape, generate_demo_dataset
from yolo_attn.utils.paths import cache_root


def test_demo_set_layout_and_yaml(tmp_path):
    yaml_path = generate_demo_dataset(tmp_path / "demo", n_train=5, n_val=3, img_size=64)
    config = load_dataset_config(yaml_path)
    assert config.names == DEMO_NAMES and config.nc == 3
    assert len(list((tmp_path / "demo" / "images" / "train").glob("*.jpg"))) == 5
    assert len(list((tmp_path / "demo" / "labels" / "val").glob("*.txt"))) == 3
    mtime = yaml_path.stat().st_mtime_ns
    assert generate_demo_dataset(tmp_path / "demo", n_train=99) == yaml_path  # already complete: not rewritten
    assert yaml_path.stat().st_mtime_ns == mtime
    assert len(list((tmp_path / "demo" / "images" / "train").glob("*.jpg"))) == 5


def test_cache_root_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("YOLO_ATTN_CACHE", str(tmp_path))
    assert cache_root() == tmp_path
    monkeypatch.delenv("YOLO_ATTN_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "yolo-attn"


def test_label_cache_and_demo_set_share_the_cache_root(monkeypatch, tmp_path):
    monkeypatch.setenv("YOLO_ATTN_CACHE", str(tmp_path))
    monkeypatch.setattr(synthetic, "synthetic_image", lambda rng, size: (np.zeros((size, size, 3), np.uint8),
                                                                         np.zeros((0, 5))))
    assert default_cache_dir() == tmp_path / "labels"
    assert generate_demo_dataset(n_train=1, n_val=1, img_size=32) == tmp_path / "demo" / "demo.yaml"


def test_labels_match_painted_pixels_exactly():
    rng = np.random.default_rng(0)
    for cls in range(len(DEMO_NAMES)):
        canvas = np.zeros((80, 80, 3), dtype=np.uint8)
        x1, y1, x2, y2 = draw_shape(canvas, cls, (10, 20, 50, 61), rng)
        ys, xs = np.nonzero(canvas.any(2))
        assert (xs.min(), ys.min(), xs.max(), ys.max()) == (x1, y1, x2, y2), DEMO_NAMES[cls]


def test_saved_labels_sit_on_class_colours(tmp_path):
    generate_demo_dataset(tmp_path, n_train=6, n_val=1, img_size=96, seed=3)
    checked = 0
    for label_file in sorted((tmp_path / "labels" / "train").glob("*.txt")):
        image = cv2.imread(str(tmp_path / "images" / "train" / f"{label_file.stem}.jpg"))
        for line in label_file.read_text().splitlines():
            cls, cx, cy, w, h = (float(v) for v in line.split())
            if cls == 2:
                continue  # a triangle's box centre can sit on its edge
            pixel = image[int(cy * 96), int(cx * 96)].astype(int)
            assert np.abs(pixel - np.array(DEMO_COLORS[int(cls)])).max() < 40
            checked += 1
    assert checked >= 3
