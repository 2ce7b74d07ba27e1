"""DetectionDataset: label scan and cache, rectangular batches, letterboxed items, dataloader."""

from __future__ import annotations

import logging
import os

import cv2
import numpy as np
import pytest
import torch

import yolo_attn.data.dataset as dataset_module
from yolo_attn.data.config import load_dataset_config
from yolo_attn.data.dataset import (
    DetectionDataset,
    WeightedImageSampler,
    create_dataloader,
    image_weights,
    label_path_for,
    rect_batch_shapes,
    single_class_names,
)
from yolo_attn.data.labels import parse_label_lines
from yolo_attn.utils.boxes import scale_boxes, xywh2xyxy


@pytest.fixture
def coco128(shared):
    return {
        layout: load_dataset_config(shared / f"data/coco128/{name}").splits["val"]
        for layout, name in (("yolo", "coco128.yaml"), ("coco", "coco128-coco.yaml"))
    }


@pytest.fixture
def tiny_yolo(tmp_path):
    """Four images: two good, one with bad label lines, one corrupt; one good image has no label file."""
    images, labels = tmp_path / "ds" / "images" / "val", tmp_path / "ds" / "labels" / "val"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, (h, w) in {"a": (48, 64), "b": (64, 40), "c": (30, 30)}.items():
        cv2.imwrite(str(images / f"{name}.jpg"), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    (images / "broken.jpg").write_bytes(b"not a jpeg at all")
    (labels / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n1 0.25 0.25 0.1 0.2\n")
    (labels / "b.txt").write_text("1 0.5 0.5 0.2 0.2\nfoo bar\n1 0.5 0.5 0.1 nan\n0 1.5 0.5 0.1 0.1\n")
    (labels / "broken.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    cfg = load_dataset_config({"path": str(tmp_path / "ds"), "val": "images/val", "names": ["x", "y"]})
    return cfg.splits["val"]


def test_label_path_swaps_the_last_images_folder():
    assert (
        label_path_for(f"{os.sep}d{os.sep}images{os.sep}images{os.sep}x.jpg")
        == f"{os.sep}d{os.sep}images{os.sep}labels{os.sep}x.txt"
    )


def test_parse_label_lines_drops_bad_lines_boxes_polygons_and_dedups():
    text = "\n".join(
        ["0 0.5 0.5 0.2 0.2", "0 0.5 0.5 0.2 0.2", "1 0.1 0.1 0.3 0.1 0.3 0.5 0.1 0.5", "2 0.5 0.5 0.1 0.1", "1 0.5"]
        + ["0.5 0.5 0.5 0.1 0.1"]
    )
    labels, dropped, repaired, problems = parse_label_lines(text, nc=2)
    np.testing.assert_allclose(labels, [[0, 0.5, 0.5, 0.2, 0.2], [1, 0.2, 0.3, 0.2, 0.4]], atol=1e-6)
    assert labels.dtype == np.float32
    assert dropped == {"duplicate": 1, "class id >= nc": 1, "wrong number of values": 1,
                       "class id not an integer >= 0": 1}
    assert repaired == {"polygon as box": 1}
    assert len(problems) == 4 and any("duplicate" in p for p in problems)
    assert any("line 4" in p and "class id >= nc (2)" in p for p in problems)


def test_scan_skips_corrupt_files_with_one_warning_each_and_counts_them(tiny_yolo, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="yolo_attn.data"):
        ds = DetectionDataset(tiny_yolo, img_size=64, cache_dir=tmp_path / "cache")
    assert [os.path.basename(f) for f in ds.im_files] == ["a.jpg", "b.jpg", "c.jpg"]
    s = ds.summary
    assert (s.found, s.missing, s.empty, s.corrupt) == (2, 1, 0, 1)
    np.testing.assert_allclose(ds.labels[1], [[1, 0.5, 0.5, 0.2, 0.2]])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert any("broken.jpg" in w and "skipped" in w for w in warnings)
    assert any("b.txt" in w and "line 2" in w and "line 3" in w and "line 4" in w for w in warnings)
    assert "2 with labels, 1 label files missing, 0 empty, 1 skipped (not an image 1); labels dropped 3 " \
           "(non-finite value 1, not numbers 1, outside the image 1)" in caplog.text
    assert ds.shapes.tolist() == [[64, 48], [40, 64], [30, 30]]


def test_label_cache_is_reused_until_a_file_changes(tiny_yolo, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = DetectionDataset(tiny_yolo, img_size=64, cache_dir=cache)
    (cache_file,) = cache.iterdir()
    with np.load(cache_file, allow_pickle=False) as z:  # plain arrays only
        assert int(z["label_counts"].sum()) == 3

    def no_rescan(*args, **kwargs):
        raise AssertionError("rescanned although nothing changed")

    monkeypatch.setattr(dataset_module, "_scan", no_rescan)
    again = DetectionDataset(tiny_yolo, img_size=64, cache_dir=cache)
    assert again.im_files == first.im_files
    assert all(np.array_equal(a, b) for a, b in zip(again.labels, first.labels, strict=True))
    assert again.summary.messages == first.summary.messages
    monkeypatch.undo()

    label = tiny_yolo.sources[0].parent.parent / "labels" / "val" / "c.txt"
    label.write_text("0 0.5 0.5 0.5 0.5\n")
    changed = DetectionDataset(tiny_yolo, img_size=64, cache_dir=cache)
    assert len(changed.labels[2]) == 1 and changed.summary.missing == 0

    cache_file.write_bytes(b"damaged")
    assert len(DetectionDataset(tiny_yolo, img_size=64, cache_dir=cache)) == 3


def test_cache_dir_defaults_to_the_env_folder(tiny_yolo, tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_ATTN_CACHE", str(tmp_path / "envcache"))
    DetectionDataset(tiny_yolo, img_size=64)
    assert len(list((tmp_path / "envcache" / "labels").glob("*.cache"))) == 1
    assert not list(tiny_yolo.sources[0].parent.parent.rglob("*.cache"))


def test_yolo_and_coco_layouts_give_the_same_dataset(coco128, tmp_path):
    yolo = DetectionDataset(coco128["yolo"], rect=True, pad=0.5, cache_dir=tmp_path)
    coco = DetectionDataset(coco128["coco"], rect=True, pad=0.5, cache_dir=tmp_path)
    assert len(yolo) == len(coco) == 128 and yolo.im_files == coco.im_files
    assert sum(map(len, yolo.labels)) == sum(map(len, coco.labels)) == 929
    for a, b in zip(yolo.labels, coco.labels, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert np.array_equal(yolo.shapes, coco.shapes) and np.array_equal(yolo.batch_shapes, coco.batch_shapes)
    assert yolo.image_ids == coco.image_ids and yolo.image_ids[0] == int(os.path.basename(yolo.im_files[0])[:-4])


def test_rect_batches_sort_by_aspect_ratio_and_pad_half_a_stride():
    shapes = np.array([[640, 480], [480, 640], [640, 320], [640, 640]])  # (w, h)
    order, batch_shapes = rect_batch_shapes(shapes, batch_size=2, img_size=640, stride=32, pad=0.5)
    assert order.tolist() == [2, 0, 3, 1]  # h/w: 0.5, 0.75, 1, 1.33
    # batch 0 widest h/w 0.75 -> (0.75 * 640 / 32 + 0.5) -> ceil 16 -> 512 x (20.5 -> 21) 672
    assert batch_shapes.tolist() == [[512, 672], [672, 672]]


def test_items_are_letterboxed_to_their_batch_shape_and_map_back(coco128, tmp_path):
    ds = DetectionDataset(coco128["yolo"], img_size=320, batch_size=8, rect=True, pad=0.5, cache_dir=tmp_path)
    for i in (0, 60, 127):
        image, labels, path, ((h0, w0), ratio_pad) = ds[i]
        assert image.dtype == torch.uint8 and tuple(image.shape[1:]) == tuple(ds.batch_shapes[ds.batch_index[i]])
        assert (h0, w0) == tuple(ds.shapes[i][::-1]) and path == ds.im_files[i]
        assert labels.shape == (len(ds.labels[i]), 6) and (labels[:, 2:] >= 0).all() and (labels[:, 2:] <= 1).all()
        height, width = image.shape[1:]
        boxes = xywh2xyxy(labels[:, 2:] * torch.tensor([width, height, width, height]))
        scale_boxes((height, width), boxes, (h0, w0), ratio_pad)
        expected = xywh2xyxy(torch.from_numpy(ds.labels[i][:, 1:]) * torch.tensor([w0, h0, w0, h0]))
        torch.testing.assert_close(boxes, expected, atol=2.0, rtol=0)


def test_load_image_resizes_the_long_side(coco128, tmp_path):
    ds = DetectionDataset(coco128["coco"], img_size=320, cache_dir=tmp_path)
    image, (h0, w0), (h, w) = ds.load_image(0)
    assert max(h, w) == 320 and image.shape[:2] == (h, w) and (w0, h0) == tuple(ds.shapes[0])
    area = cv2.resize(cv2.imread(ds.im_files[0]), (w, h), interpolation=cv2.INTER_AREA)
    assert np.array_equal(image, area)  # shrinking without augmentation uses INTER_AREA, as YOLOv5


def test_dataloader_collates_with_the_image_index(coco128, tmp_path):
    ds = DetectionDataset(coco128["yolo"], 160, 4, rect=True, stride=32, pad=0.5, cache_dir=tmp_path)
    loader = create_dataloader(ds, 4, workers=0)
    images, targets, paths, shapes = next(iter(loader))
    assert images.shape[0] == 4 and len(paths) == len(shapes) == 4
    assert targets.shape[1] == 6 and targets[:, 0].unique().tolist() == sorted(
        {i for i in range(4) if len(ds.labels[i])}
    )
    assert sum(len(ds.labels[i]) for i in range(4)) == len(targets)


def test_image_caches_give_the_images_the_files_give(tiny_yolo, tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_ATTN_CACHE", str(tmp_path / "cache"))
    plain = DetectionDataset(tiny_yolo, img_size=32, cache_dir=tmp_path / "labels")
    expected = [plain.load_image(i)[0] for i in range(len(plain))]
    for mode in ("ram", "disk", "disk"):  # the second disk pass reads the .npy files the first one wrote
        cached = DetectionDataset(tiny_yolo, img_size=32, cache_dir=tmp_path / "labels")
        cached.cache_images(mode)
        assert all(np.array_equal(cached.load_image(i)[0], image) for i, image in enumerate(expected))
    assert len(list((tmp_path / "cache" / "images").glob("*.npy"))) == len(plain)


def test_single_class_labels_and_names(tiny_yolo, tmp_path):
    dataset = DetectionDataset(tiny_yolo, img_size=32, cache_dir=tmp_path, single_cls=True)
    plain = DetectionDataset(tiny_yolo, img_size=32, cache_dir=tmp_path)
    assert dataset.split.names == ("item",) and dataset.split.nc == 1
    for ours, theirs in zip(dataset.labels, plain.labels, strict=True):
        assert (ours[:, 0] == 0).all() and np.array_equal(ours[:, 1:], theirs[:, 1:])
    assert single_class_names(["person"]) == ["person"] and single_class_names(["a", "b"]) == ["item"]


def test_image_weights_favour_rare_and_poorly_detected_classes():
    labels = [np.array([[0, 0.5, 0.5, 0.1, 0.1]] * 3, np.float32), np.array([[1, 0.5, 0.5, 0.1, 0.1]], np.float32),
              np.zeros((0, 5), np.float32)]
    # class weights 1/3 and 1/1: an image weighs the sum over its boxes
    np.testing.assert_allclose(image_weights(labels, nc=2), [1.0, 1.0, 0.0])
    np.testing.assert_allclose(image_weights(labels, nc=2, class_maps=np.array([0.0, 0.5])), [1.0, 0.25, 0.0])
    sampler = WeightedImageSampler(np.array([1.0, 3.0, 0.0]), seed=7)
    sampler.set_epoch(4)
    drawn = list(sampler)
    assert len(drawn) == 3 and 2 not in drawn and drawn == list(sampler)  # same (seed, epoch): same draw
    sampler.weights = np.zeros(3)  # no labels at all: uniform
    assert len(list(sampler)) == 3
