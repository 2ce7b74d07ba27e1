"""One logger tree: the library logs through ``yolo_attn.*`` and prints nothing; the command line configures it
(``--quiet``, ``--verbose``) for the command's duration."""

from __future__ import annotations

import ast
import json
import logging
from pathlib import Path

import pytest

from tests.conftest import CONFIGS, ROOT
from yolo_attn.checkpoint import make_checkpoint, save_checkpoint
from yolo_attn.cli import main
from yolo_attn.data.synthetic import generate_demo_dataset
from yolo_attn.nn import build_model

PACKAGE = ROOT / "yolo_attn"
CLI_MODULES = (PACKAGE / "commands", PACKAGE / "cli.py")  # the commands' results go to stdout from here only


def print_calls(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"]


def test_the_library_prints_nothing_outside_the_cli():
    found = [f"{path.relative_to(ROOT)}:{line}" for path in sorted(PACKAGE.rglob("*.py"))
             if not any(path == cli or cli in path.parents for cli in CLI_MODULES) for line in print_calls(path)]
    assert not found, f"print() in the library (log through logging.getLogger(__name__)): {found}"


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return str(generate_demo_dataset(tmp_path_factory.mktemp("tiny"), n_train=4, n_val=2, img_size=64))


@pytest.fixture(autouse=True)
def label_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_ATTN_CACHE", str(tmp_path / "cache"))


def test_train_output_has_the_dataset_summary(tiny_data, tmp_path, capsys):
    argv = ["train", "--cfg", "yolov5n.yaml", "--data", tiny_data, "--epochs", "1", "--img", "64", "--batch", "4",
            "--workers", "0", "--noplots", "--noautoanchor", "--project", str(tmp_path), "--json"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "train: scanned 4 images: 4 with labels" in err and "val: scanned 2 images: 2 with labels" in err
    assert "training yolov5n.yaml" in err and "1 epochs in" in err
    assert json.loads(out.strip().splitlines()[-1])["epochs"] == 1  # stdout: the result only
    assert not logging.getLogger("yolo_attn").handlers  # the command's handler is gone when it ends


def test_quiet_silences_info(tiny_data, tmp_path, capsys):
    weights = tmp_path / "yolov5n.pt"
    save_checkpoint(weights, make_checkpoint(build_model(CONFIGS / "models" / "yolov5n.yaml", nc=3),
                                             names=["rectangle", "ellipse", "triangle"]))
    argv = ["val", "--weights", str(weights), "--data", tiny_data, "--img", "64", "--no-plots", "--no-coco",
            "--project", str(tmp_path), "--json"]
    for flags, shown in (([], True), (["--quiet"], False)):
        assert main([*flags, *argv]) == 0
        out, err = capsys.readouterr()
        assert ("val: scanned 2 images: 2 with labels" in err) is shown
        assert json.loads(out.strip().splitlines()[-1])["map50"] >= 0.0  # the result whatever the verbosity


def test_verbosity_flags_after_the_command_and_other_levels_named(monkeypatch, capsys):
    from yolo_attn.commands import info

    def log_at_every_level(args):
        logger = logging.getLogger("yolo_attn.engine.example")
        logger.debug("a debug line")
        logger.info("an info line")
        logger.warning("a warning line")
        return 0

    monkeypatch.setattr(info, "run", log_at_every_level)
    runs = {}
    for flags in ([], ["--quiet"], ["-v"]):
        assert main(["info", *flags, "--cfg", "unused.yaml"]) == 0
        runs[" ".join(flags)] = capsys.readouterr().err.splitlines()
    assert runs[""] == ["an info line", "warning: a warning line"]
    assert runs["--quiet"] == ["warning: a warning line"]
    assert runs["-v"] == ["debug: a debug line", "an info line", "warning: a warning line"]
