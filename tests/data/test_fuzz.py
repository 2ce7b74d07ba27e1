"""Data fuzz: every corruption of a YOLO- or COCO-layout set (tests/data/fuzz.py) either loads, with the damage
counted under its named reason in the scan's one summary line, or stops with one ``UserError``. No traceback, no
library warning without a file name, and no image lost without being counted."""

from __future__ import annotations

import os
import subprocess
import sys
import zlib
from collections import Counter

import numpy as np
import pytest
import torch

from tests.conftest import ROOT
from tests.data.fuzz import (
    CORRUPTIONS,
    WHOLE_SET,
    Expect,
    FuzzSet,
    listed_images,
    make_fuzz_set,
    truncated_jpeg,
    yaml_nc_below_class_ids,
)
from yolo_attn.checkpoint import make_checkpoint, save_checkpoint
from yolo_attn.data.config import load_dataset_config
from yolo_attn.data.dataset import DetectionDataset, ScanSummary
from yolo_attn.engine.predictor import read_images
from yolo_attn.errors import UserError
from yolo_attn.nn.builder import build_model

CASES = [(layout, corrupt) for layout, corruptions in CORRUPTIONS.items() for corrupt in corruptions]
LIBRARY_NOISE = ("Traceback", "Premature end of JPEG", "Corrupt JPEG", "libpng")


def scan(fs: FuzzSet, split: str, cache) -> DetectionDataset:
    return DetectionDataset(load_dataset_config(fs.yaml_path).split(split), img_size=64, cache_dir=cache,
                            prefix=f"{split}: ")


def check_every_image_accounted_for(fs: FuzzSet, split: str, dataset: DetectionDataset) -> None:
    """Listed = used + skipped; every used image loads as a 3-channel tensor with finite labels."""
    s = dataset.summary
    assert s.found + s.missing + s.empty + s.corrupt == listed_images(fs, split)
    assert len(dataset) == s.found + s.missing + s.empty
    for i in range(len(dataset)):
        image, labels, _, _ = dataset[i]
        assert image.shape[0] == 3 and image.dtype == torch.uint8
        assert torch.isfinite(labels).all() and ((labels[:, 2:] >= 0) & (labels[:, 2:] <= 1)).all()


def all_labels(dataset: DetectionDataset) -> np.ndarray:
    rows = np.concatenate(dataset.labels, 0)
    return rows[np.lexsort(rows.T[::-1])]


def check_expectation(expect: Expect, corrupted: ScanSummary, clean: DetectionDataset, dataset: DetectionDataset):
    if expect.counter == "same":
        assert corrupted.line() == clean.summary.line()
        np.testing.assert_array_equal(all_labels(dataset), all_labels(clean))
    elif expect.counter in ("missing", "empty"):
        assert getattr(corrupted, expect.counter) - getattr(clean.summary, expect.counter) == expect.count
    else:
        assert getattr(corrupted, expect.counter) == Counter({expect.reason: expect.count})
        assert f"{expect.reason} {expect.count}" in corrupted.line()


@pytest.mark.parametrize(("layout", "corrupt"), CASES, ids=[f"{layout}-{c.__name__}" for layout, c in CASES])
def test_each_corruption_is_counted_by_name_or_refused(layout, corrupt, tmp_path, capfd):
    seed = zlib.crc32(f"{layout}-{corrupt.__name__}".encode())
    clean = scan(make_fuzz_set(tmp_path / "clean", layout, seed), "train", tmp_path / "cache")
    fs = make_fuzz_set(tmp_path / "broken", layout, seed)
    expect = corrupt(fs, "train")
    if expect.counter == "error":
        with pytest.raises(UserError, match=expect.reason):
            scan(fs, "train", tmp_path / "cache")
    else:
        dataset = scan(fs, "train", tmp_path / "cache")
        check_every_image_accounted_for(fs, "train", dataset)
        check_expectation(expect, dataset.summary, clean, dataset)
        check_every_image_accounted_for(fs, "val", scan(fs, "val", tmp_path / "cache"))
    err = capfd.readouterr().err
    assert not any(noise in err for noise in LIBRARY_NOISE), err


@pytest.mark.parametrize("layout", ["yolo", "coco"])
@pytest.mark.parametrize("seed", range(8))
def test_random_combinations_add_up_reason_by_reason(layout, seed, tmp_path, capfd):
    """2-8 corruptions on distinct files of one set: each summary counter is exactly the sum of what they expect,
    and the cached scan reports the same."""
    fs = make_fuzz_set(tmp_path / "ds", layout, seed, n_train=12)
    candidates = [c for c in CORRUPTIONS[layout] if c.__name__ not in WHOLE_SET]
    chosen = fs.rng.choice(len(candidates), size=int(fs.rng.integers(2, 9)), replace=False)
    expects = [candidates[i](fs, "train") for i in chosen]
    dataset = scan(fs, "train", tmp_path / "cache")
    summary = dataset.summary
    for name in ScanSummary.COUNTERS:
        wanted = Counter()
        for e in expects:
            wanted[e.reason] += e.count if e.counter == name else 0
        assert getattr(summary, name) == +wanted, (name, [candidates[i].__name__ for i in chosen])
    for name in ("missing", "empty"):
        assert getattr(summary, name) == sum(e.count for e in expects if e.counter == name)
    check_every_image_accounted_for(fs, "train", dataset)
    assert scan(fs, "train", tmp_path / "cache").summary.line() == summary.line()  # from the cache
    assert not any(noise in capfd.readouterr().err for noise in LIBRARY_NOISE)


def test_prediction_skips_a_truncated_jpeg_naming_it(tmp_path, capfd, caplog):
    fs = make_fuzz_set(tmp_path / "ds", "yolo", seed=5)
    truncated_jpeg(fs, "val")
    (broken,) = fs.used
    read = [path for path, _ in read_images(sorted(fs.image_dir("val").iterdir()))]
    assert broken not in read and len(read) == 2
    assert f"skipping {broken}: truncated" in caplog.text
    assert not any(noise in capfd.readouterr().err for noise in LIBRARY_NOISE)


def run_cli(*args: str, cache) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "YOLO_ATTN_CACHE": str(cache)}
    return subprocess.run([sys.executable, "-m", "yolo_attn", *args], env=env, capture_output=True, text=True,
                          timeout=600)  # a hang fails the test


def scan_lines(stderr: str) -> dict[str, str]:
    return {line.split(":")[0]: line for line in stderr.splitlines() if ": scanned " in line}


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["yolo", "coco"])
def test_train_and_val_print_the_same_summary_of_a_broken_set(layout, tmp_path):
    """Every corruption that loads, on one set at once: train and val run to the end and print one summary line per
    split (val's equal to train's), and train trains on exactly the images the line counts as used."""
    fs = make_fuzz_set(tmp_path / "ds", layout, seed=11, n_train=26, n_val=13)
    for index, corrupt in enumerate(c for c in CORRUPTIONS[layout] if c.__name__ not in WHOLE_SET):
        corrupt(fs, "train" if index % 3 else "val")
    common = ("--img", "64", "--workers", "0", "--device", "cpu")
    train = run_cli("train", "--cfg", "yolov5n.yaml", "--data", str(fs.yaml_path), "--epochs", "1", "--batch", "8",
                    "--noplots", "--project", str(tmp_path / "runs"), *common, cache=tmp_path / "cache")
    assert train.returncode == 0, train.stderr[-3000:]
    lines = scan_lines(train.stderr)
    assert set(lines) == {"train", "val"}
    summary = scan(fs, "train", tmp_path / "cache").summary
    assert lines["train"] == summary.line("train: ")
    assert f": {summary.found + summary.missing + summary.empty} images, 64 px" in train.stderr
    weights = tmp_path / "runs" / "exp" / "weights" / "last.pt"
    val = run_cli("val", "--weights", str(weights), "--data", str(fs.yaml_path), "--no-plots", "--project",
                  str(tmp_path / "val"), *common, cache=tmp_path / "cache")
    assert val.returncode == 0, val.stderr[-3000:]
    assert scan_lines(val.stderr) == {"val": lines["val"]}
    for output in (train.stderr, val.stderr):
        assert not any(noise in output for noise in LIBRARY_NOISE)


@pytest.mark.slow
def test_train_and_val_stop_on_class_ids_beyond_the_yaml(tmp_path):
    """The data YAML's nc below the labels' class ids: both commands stop with the same one-line error (training
    used to run on zero labels)."""
    fs = make_fuzz_set(tmp_path / "ds", "yolo", seed=3)
    for split in ("train", "val"):
        yaml_nc_below_class_ids(fs, split)
    weights = tmp_path / "w.pt"
    save_checkpoint(weights, make_checkpoint(build_model("yolov5n.yaml", nc=1), names=["red"]))
    common = ("--data", str(fs.yaml_path), "--img", "64", "--workers", "0")
    train = run_cli("train", "--cfg", "yolov5n.yaml", "--project", str(tmp_path / "runs"), *common,
                    cache=tmp_path / "cache")
    val = run_cli("val", "--weights", str(weights), "--project", str(tmp_path / "val"), *common,
                  cache=tmp_path / "cache")
    for result in (train, val):
        assert result.returncode == 2 and "Traceback" not in result.stderr
        (error,) = [line for line in result.stderr.splitlines() if "error:" in line]
        assert "labels have a class id outside 0..0" in error and "'nc'/'names' (1 classes)" in error
