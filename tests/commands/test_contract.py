"""The command-line contract, checked for every command in the table: flags, JSON output, exit codes."""

from __future__ import annotations

import argparse
import importlib
import json

import pytest

from tests.conftest import CONFIGS
from yolo_attn import build_model
from yolo_attn.checkpoint import make_checkpoint, save_checkpoint
from yolo_attn.cli import COMMANDS, main
from yolo_attn.data.synthetic import generate_demo_dataset
from yolo_attn.utils.device import DEFAULT_DEVICE

RUN_WRITERS = {"train", "val", "predict", "benchmark", "ablate", "cam"}


def options_of(command: str) -> dict[str, argparse.Action]:
    parser = argparse.ArgumentParser()
    importlib.import_module(COMMANDS[command][0]).configure_parser(parser)
    return {action.dest: action for action in parser._actions}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_flags_are_the_same_everywhere(command):
    options = options_of(command)
    assert "json" in options
    if "device" in options:
        assert options["device"].default == DEFAULT_DEVICE
        assert options["device"].help == options_of("train")["device"].help
    writes_runs = "project" in options
    assert writes_runs == (command in RUN_WRITERS)
    if writes_runs:
        assert {"name", "exist_ok"} <= set(options) and options["name"].default == "exp"
        assert options["project"].default == f"runs/{command}"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_usage_errors_exit_2(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--no-such-flag"])
    assert exit_info.value.code == 2


USER_ERRORS = {
    "info": ["--cfg", "missing.yaml"],
    "blocks": ["NoSuchBlock"],
    "insert": ["missing.yaml", "--after", "1", "--block", "CBAM"],
    "train": ["--cfg", "yolov5n.yaml", "--data", "missing.yaml"],
    "val": ["--weights", "missing.pt", "--data", "missing.yaml"],
    "predict": ["--weights", "missing.pt", "--source", "missing.jpg"],
    "export": ["--weights", "missing.pt"],
    "benchmark": ["--weights", "missing.pt", "--data", "missing.yaml"],
    "ablate": ["--blocks", "CBAM", "--base", "missing.yaml"],
    "cam": ["--weights", "missing.pt", "--source", "missing.jpg"],
    "check-block": ["missing.py:Block"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_user_errors_exit_2_with_one_line(command, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([command, *USER_ERRORS[command]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"yolo-attn {command}: error: ")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, shared):
    root = tmp_path_factory.mktemp("contract")
    weights = root / "yolov5n.pt"
    model = build_model(CONFIGS / "models" / "yolov5n.yaml")
    save_checkpoint(weights, make_checkpoint(model, names=[str(i) for i in range(80)]))
    data = generate_demo_dataset(root / "demo", n_train=4, n_val=2, img_size=64)
    return {"weights": str(weights), "data": str(data), "image": str(shared / "data" / "images" / "bus.jpg"),
            "coco8": str(shared / "data" / "coco8" / "coco8.yaml"), "root": root}


def json_runs(inputs, tmp_path) -> dict[str, list[str]]:
    runs = ["--project", str(tmp_path / "runs")]
    tiny = ["--img", "64", "--batch", "4", "--workers", "0"]
    return {
        "info": ["--cfg", "yolov5n.yaml"],
        "blocks": ["CBAM", "--no-cost"],
        "insert": ["yolov5n.yaml", "--after", "9", "--block", "SE", "-o", str(tmp_path / "se.yaml")],
        "export": ["--weights", inputs["weights"], "--img", "64", "--output", str(tmp_path / "m.onnx")],
        "predict": ["--weights", inputs["weights"], "--source", inputs["image"], "--img", "64", *runs],
        "val": ["--weights", inputs["weights"], "--data", inputs["coco8"], "--img", "64", "--no-plots", *runs],
        "benchmark": ["--weights", inputs["weights"], "--data", inputs["coco8"], "--img", "64", "--runs", "1",
                      "--gemm-size", "64", "--formats", "torch", "--workers", "0", *runs],
        "train": ["--cfg", "yolov5n.yaml", "--data", inputs["data"], "--epochs", "1", "--noplots", *tiny, *runs],
        "ablate": ["--blocks", "SE", "--data", inputs["data"], "--epochs", "1", "--cam", "1", *tiny, *runs],
        "cam": ["--weights", inputs["weights"], "--source", inputs["image"], "--img", "64", "--dpi", "30", *runs],
        "check-block": ["SE", "--repeats", "0"],
    }


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_json_is_one_object_on_the_last_line(command, inputs, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("YOLO_ATTN_CACHE", str(inputs["root"] / "cache"))
    assert main([command, *json_runs(inputs, tmp_path)[command], "--json"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert isinstance(json.loads(last), dict)
