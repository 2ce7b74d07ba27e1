"""Augmentation: boxes follow the pixels through warps, flips and mosaic; every draw from the dataset's generator."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from yolo_attn.data.augment import TrainDataset, augment_hsv, flip, mixup, random_perspective
from yolo_attn.data.config import load_dataset_config
from yolo_attn.data.dataset import create_dataloader
from yolo_attn.data.synthetic import DEMO_COLORS, generate_demo_dataset

NO_AUGMENT = {
    "hsv_h": 0.0, "hsv_s": 0.0, "hsv_v": 0.0, "degrees": 0.0, "translate": 0.0, "scale": 0.0, "shear": 0.0,
    "perspective": 0.0, "flipud": 0.0, "fliplr": 0.0, "mosaic": 0.0, "mixup": 0.0,
}


def white_rectangle(h=200, w=300, box=(60, 40, 160, 120)):
    image = np.zeros((h, w, 3), dtype=np.uint8)
    x1, y1, x2, y2 = box
    image[y1:y2, x1:x2] = 255
    return image, np.array([[3, x1, y1, x2, y2]], dtype=np.float32)


def pixel_extent(image):
    ys, xs = np.nonzero(image[..., 0] > 127)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float32)


def test_random_perspective_identity_keeps_image_and_labels():
    image, labels = white_rectangle()
    out, out_labels = random_perspective(image.copy(), labels.copy(), np.random.default_rng(0), degrees=0, translate=0,
                                         scale=0, shear=0)
    assert np.array_equal(out, image)
    np.testing.assert_allclose(out_labels, labels)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_perspective_box_encloses_warped_pixels(seed):
    image, labels = white_rectangle()
    rng = np.random.default_rng(seed)
    out, out_labels = random_perspective(image, labels, rng, degrees=30, translate=0.1, scale=0.3, shear=5)
    assert out.shape == image.shape and out_labels.shape == (1, 5) and out_labels[0, 0] == 3
    np.testing.assert_allclose(out_labels[0, 1:], pixel_extent(out), atol=2.0)


def test_random_perspective_drops_boxes_warped_out_of_view():
    image, labels = white_rectangle(box=(0, 0, 20, 20))
    _, out_labels = random_perspective(image, labels, np.random.default_rng(0), degrees=0, translate=0, scale=0,
                                       shear=0, border=(-60, -60))
    assert len(out_labels) == 0  # the crop removes the top-left 60 px, where the box was


def test_flips_move_boxes_with_pixels():
    image, labels = white_rectangle()
    flipped = flip(image, labels, np.random.default_rng(0), {"fliplr": 1.0, "flipud": 1.0})
    np.testing.assert_allclose(labels[0, 1:], pixel_extent(flipped))
    np.testing.assert_allclose(labels[0, 1:], [300 - 160, 200 - 120, 300 - 60, 200 - 40])


def test_hsv_zero_gain_is_identity_and_gain_changes_colours():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    same = image.copy()
    augment_hsv(same, rng, 0, 0, 0)
    assert np.array_equal(same, image)
    changed = image.copy()
    augment_hsv(changed, rng, 0.5, 0.7, 0.4)
    assert changed.dtype == np.uint8 and not np.array_equal(changed, image)


def test_mixup_blends_and_concatenates():
    a, b = np.full((8, 8, 3), 200, np.uint8), np.full((8, 8, 3), 100, np.uint8)
    image, labels = mixup(a, np.ones((2, 5)), b, np.zeros((3, 5)), np.random.default_rng(0))
    assert len(labels) == 5 and 100 < image[0, 0, 0] < 200  # Beta(32, 32) ratio sits near 0.5


@pytest.fixture(scope="module")
def demo_split(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    return load_dataset_config(generate_demo_dataset(root, n_train=8, n_val=2, img_size=96)).split("train")


@pytest.mark.parametrize("mosaic9", [0.0, 1.0])
def test_mosaic_labels_land_on_their_shapes(demo_split, tmp_path, mosaic9):
    """Rectangles stay axis-aligned with scale/translate off: each box's centre pixel has its class colour."""
    hyp = {**NO_AUGMENT, "mosaic": 1.0, "mosaic9": mosaic9, "fliplr": 0.5}
    dataset = TrainDataset(demo_split, img_size=96, batch_size=4, augment=True, hyp=hyp, cache_dir=tmp_path)
    checked = 0
    for i in range(len(dataset)):
        image, targets, _, shapes = dataset[i]
        assert image.shape == (3, 96, 96) and shapes is None
        assert ((targets[:, 2:] >= 0) & (targets[:, 2:] <= 1)).all()
        rgb = image.permute(1, 2, 0).numpy()
        for cls, cx, cy, w, h in targets[:, 1:].tolist():
            if cls == 0 and w * 96 > 4 and h * 96 > 4:
                pixel = rgb[int(cy * 96), int(cx * 96)][::-1].astype(int)  # back to BGR
                assert np.abs(pixel - np.array(DEMO_COLORS[0])).max() < 60
                checked += 1
    assert checked > 3


def test_without_augment_items_match_base_dataset(demo_split, tmp_path):
    dataset = TrainDataset(demo_split, img_size=96, batch_size=4, augment=False, hyp=None, cache_dir=tmp_path)
    image, targets, _, shapes = dataset[0]
    assert image.shape == (3, 96, 96) and shapes is not None
    np.testing.assert_allclose(targets[:, 1:].numpy(), dataset.labels[0], atol=1e-3)


FULL_AUGMENT = {
    "hsv_h": 0.015, "hsv_s": 0.7, "hsv_v": 0.4, "degrees": 5.0, "translate": 0.1, "scale": 0.5, "shear": 2.0,
    "perspective": 0.0005, "flipud": 0.5, "fliplr": 0.5, "mosaic": 1.0, "mosaic9": 0.3, "mixup": 0.5,
}


def items(dataset, indices=range(4)):
    return [(image.clone(), targets.clone()) for image, targets, _, _ in (dataset[i] for i in indices)]


def same_items(a, b) -> bool:
    return all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b, strict=True))


def test_augmentation_draws_from_the_dataset_generator_only(demo_split, tmp_path):
    """Same seed: same items, whatever happens to the process-wide RNGs; another seed: other items; and the
    process-wide RNGs are left untouched."""
    def dataset(seed):
        return TrainDataset(demo_split, img_size=96, batch_size=4, hyp=FULL_AUGMENT, cache_dir=tmp_path, seed=seed)

    random.seed(1)
    np.random.seed(1)
    first = items(dataset(5))
    random.seed(2)
    np.random.seed(2)
    before = (random.getstate(), np.random.get_state()[1].tolist())
    again = items(dataset(5))
    assert (random.getstate(), np.random.get_state()[1].tolist()) == before
    assert same_items(first, again)
    assert not same_items(first, items(dataset(6)))


def test_generator_state_continues_the_stream(demo_split, tmp_path):
    """A dataset given a generator in a saved state draws what the original drew next (resume)."""
    original = TrainDataset(demo_split, img_size=96, batch_size=4, hyp=FULL_AUGMENT, cache_dir=tmp_path, seed=3)
    items(original, [0, 1])
    saved = original.rng.bit_generator.state
    expected = items(original, [2, 3])
    restored_rng = np.random.default_rng(0)
    restored_rng.bit_generator.state = saved
    restored = TrainDataset(demo_split, img_size=96, batch_size=4, hyp=FULL_AUGMENT, cache_dir=tmp_path,
                            seed=restored_rng)
    assert restored.rng is restored_rng and same_items(items(restored, [2, 3]), expected)


def test_loader_workers_draw_reproducible_streams_of_their_own(demo_split, tmp_path):
    """In worker processes each copy of the dataset is reseeded from the loader's generator: two loaders seeded
    alike give the same batches, and the main process's generator is not advanced."""
    dataset = TrainDataset(demo_split, img_size=96, batch_size=4, hyp=FULL_AUGMENT, cache_dir=tmp_path, seed=0)
    state = dataset.rng.bit_generator.state
    runs = []
    for _ in range(2):
        loader = create_dataloader(dataset, 4, workers=1, shuffle=True, seed=7)
        if loader.num_workers == 0:
            pytest.skip("one CPU: create_dataloader starts no worker")
        runs.append([(images.clone(), targets.clone()) for images, targets, _, _ in loader])
    assert same_items(runs[0], runs[1])
    assert dataset.rng.bit_generator.state == state
