"""Every command of the table: the YOLOv5/Ultralytics spellings parse as their flags do, every numeric flag
refuses a bad value while parsing (exit 2, one line, no traceback, no run folder), unknown flags get the
command's usage and the closest flag."""

from __future__ import annotations

import argparse
import importlib

import pytest

from yolo_attn.cli import COMMANDS, main

# What each command needs before a flag is looked at (nothing here is read: parsing fails or stops first).
REQUIRED = {
    "info": ["--cfg", "yolov5n.yaml"],
    "blocks": [],
    "insert": ["yolov5n.yaml", "--after", "9", "--block", "CBAM"],
    "train": [],
    "val": ["--weights", "w.pt", "--data", "d.yaml"],
    "predict": ["--weights", "w.pt", "--source", "x.jpg"],
    "export": ["--weights", "w.pt"],
    "benchmark": ["--weights", "w.pt", "--data", "d.yaml"],
    "ablate": ["--blocks", "CBAM"],
    "cam": ["--weights", "w.pt", "--source", "x.jpg"],
    "check-block": ["CBAM"],
}

# (command, the spelling YOLOv5 or Ultralytics users type, the same thing in our main spelling)
ALIASES = [
    ("train", ["--imgsz", "320"], ["--img", "320"]),
    ("train", ["--img-size", "320"], ["--img", "320"]),
    ("train", ["--batch-size", "8"], ["--batch", "8"]),
    ("ablate", ["--imgsz", "320"], ["--img", "320"]),
    ("val", ["--imgsz", "320"], ["--img", "320"]),
    ("val", ["--img-size", "320"], ["--img", "320"]),
    ("val", ["--conf-thres", "0.1"], ["--conf", "0.1"]),
    ("val", ["--iou-thres", "0.5"], ["--iou", "0.5"]),
    ("val", ["--batch-size", "4"], ["--batch", "4"]),
    ("predict", ["--imgsz", "320"], ["--img", "320"]),
    ("predict", ["--conf-thres", "0.3"], ["--conf", "0.3"]),
    ("predict", ["--iou-thres", "0.5"], ["--iou", "0.5"]),
    ("cam", ["--imgsz", "320"], ["--img", "320"]),
    ("cam", ["--conf-thres", "0.3"], ["--conf", "0.3"]),
    ("export", ["--imgsz", "320", "256"], ["--img", "320", "256"]),
    ("info", ["--imgsz", "320"], ["--img", "320"]),
    ("benchmark", ["--imgsz", "320"], ["--img", "320"]),
    ("benchmark", ["--batch-size", "8"], ["--batch", "8"]),
]

# YOLOv5's train.py / detect.py flags that are ours too (value parsed -> the namespace attribute it sets)
YOLOV5_FLAGS = [
    ("train", ["--freeze", "10"], "freeze", (10,)),
    ("train", ["--freeze", "0", "1", "2"], "freeze", (0, 1, 2)),
    ("train", ["--cache"], "cache", "ram"),
    ("train", ["--cache", "disk"], "cache", "disk"),
    ("train", ["--single-cls"], "single_cls", True),
    ("train", ["--multi-scale"], "multi_scale", True),
    ("train", ["--image-weights"], "image_weights", True),
    ("train", ["--save-period", "5"], "save_period", 5),
    ("train", ["--batch", "-1"], "batch", -1),
    ("train", ["--device", "mps"], "device", "mps"),
    ("ablate", ["--freeze", "10"], "freeze", (10,)),
    ("ablate", ["--no-rewire-all"], "rewire_all", False),
    ("insert", ["--no-rewire-all"], "rewire_all", False),
    ("insert", ["--force"], "force", True),
    ("export", ["--include", "onnx"], "format", "onnx"),
    ("predict", ["--save-crop"], "save_crop", True),
    ("predict", ["--nosave"], "nosave", True),
    ("predict", ["--hide-labels"], "hide_labels", True),
    ("predict", ["--hide-conf"], "hide_conf", True),
]

UNBOUNDED = {"--save-period"}  # any int: below 1 turns it off


def parser_of(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    importlib.import_module(COMMANDS[command][0]).configure_parser(parser)
    return parser


def parse(command: str, argv: list[str]) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v
            for k, v in vars(parser_of(command).parse_args([*REQUIRED[command], *argv])).items()}


@pytest.mark.parametrize(("command", "alias", "main_spelling"), ALIASES,
                         ids=lambda x: " ".join(x) if isinstance(x, list) else x)
def test_alias_parses_as_the_main_spelling(command, alias, main_spelling):
    assert parse(command, alias) == parse(command, main_spelling) != parse(command, [])


@pytest.mark.parametrize(("command", "argv", "dest", "value"), YOLOV5_FLAGS,
                         ids=lambda x: " ".join(x) if isinstance(x, list) else str(x))
def test_yolov5_flags_parse(command, argv, dest, value):
    assert parse(command, argv)[dest] == value


def numeric_flags() -> list[tuple[str, str, str]]:
    """(command, flag, a value its bounds refuse) for every flag converted to a number, in every command."""
    cases = []
    for command in COMMANDS:
        for action in parser_of(command)._actions:
            if not action.option_strings or getattr(action.type, "__name__", None) not in ("int", "float"):
                continue
            flag = action.option_strings[0]
            if flag in UNBOUNDED:
                continue
            assert action.type not in (int, float), f"{command} {flag}: a number without bounds"
            bad = next(v for v in ("0", "-2", "1.5", "2") if refuses(action.type, v))
            cases.append((command, flag, bad))
    return cases


def refuses(convert, text: str) -> bool:
    try:
        convert(text)
    except argparse.ArgumentTypeError:
        return True
    return False


@pytest.mark.parametrize(("command", "flag", "bad"), numeric_flags(), ids=lambda x: x)
def test_bad_number_exits_2_with_one_line(command, flag, bad, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main([command, *REQUIRED[command], flag, bad])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2
    assert len(err) == 1 and err[0].startswith(f"yolo-attn {command}: error: argument {flag}") and "must be" in err[0]
    assert list(tmp_path.iterdir()) == []  # no run folder, nothing written


def test_every_train_number_is_checked_by_the_library_too(tmp_path):
    from yolo_attn.engine.trainer import train
    from yolo_attn.errors import UserError

    for options, message in (({"epochs": 0}, "--epochs 0: must be at least 1"), ({"img": -32}, "--img -32"),
                             ({"batch": 0}, "--batch 0: must be at least 1, or -1"), ({"freeze": (-1,)}, "--freeze"),
                             ({"cache": "ssd"}, "--cache 'ssd': choose from ram, disk")):
        with pytest.raises(UserError, match=message):
            train(project=str(tmp_path), **options)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("command", "typo", "meant"), [
    ("train", "--img-sz", "--imgsz"), ("predict", "--conf-thresh", "--conf-thres"),
    ("val", "--iou-thresh", "--iou-thres"), ("predict", "--hide-lables", "--hide-labels"),
    ("export", "--includes", "--include"),
])
def test_unknown_flag_gets_the_command_usage_and_a_suggestion(command, typo, meant, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, *REQUIRED[command], typo, "1"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.startswith(f"usage: yolo-attn {command} ")
    assert f"unrecognized arguments: {typo} 1" in err and f"(did you mean {meant} for {typo}?)" in err
    assert "Traceback" not in err
