"""`yolo-attn train` / `ablate` flags generated from TrainConfig's fields: every flag of the hand-written parsers
they replace still there with its spellings, default, type, choices and help; parsed into the configs."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from yolo_attn.commands import ablate, train
from yolo_attn.commands.common import config_from_args
from yolo_attn.engine.ablation import PER_RUN_OPTIONS
from yolo_attn.engine.ablation_summary import AblationResult
from yolo_attn.engine.options import OPTION
from yolo_attn.engine.trainer import TrainConfig
from yolo_attn.losses import loss_names

LOSSES = object()  # stands for ("auto", *loss_names()), which grows with the registry
DEVICE_HELP = "'' (first GPU if any, else CPU), cpu, mps, 0, cuda:0, or 0,1 for several GPUs through torchrun"

# The train flags as the hand-written parser declared them:
# (spellings, default, type, choices, nargs, const, metavar, help); help None: it had none.
TRAIN_FLAGS = [
    (("--cfg",), None, None, None, None, None, None,
     "model YAML, or a built-in name such as yolov5s.yaml (with --weights: build this and transfer the pretrained "
     "layers into their counterparts)"),
    (("--weights",), None, None, None, None, None, None,
     "initial weights: our checkpoint or an upstream YOLOv5/YOLOv7 .pt"),
    (("--transfer-report",), False, None, None, 0, True, None,
     "print which pretrained layer went into which model layer (--weights with --cfg)"),
    (("--bn-calibration",), 128, int, None, None, None, "N",
     "with --weights: re-estimate the BatchNorm statistics behind new layers on N training images (0: off)"),
    (("--data",), None, None, None, None, None, None, "dataset YAML (default: the built-in synthetic demo set)"),
    (("--hyp",), None, None, None, None, None, None,
     "hyperparameter YAML or built-in name (default hyp.scratch-low.yaml; demo hyp.demo.yaml)"),
    (("--epochs",), None, int, None, None, None, None, "default 100; demo 12"),
    (("--batch", "--batch-size"), 16, int, None, None, None, None,
     "total batch size over all processes; -1: automatic (CUDA: what fits in 60 %% of the GPU's memory, measured; "
     "CPU: 16)"),
    (("--img", "--imgsz", "--img-size"), None, int, None, None, None, None,
     "train/val image size, rounded up to a multiple of the model's stride (default 640; demo 320)"),
    (("--device",), "", None, None, None, None, None, DEVICE_HELP),
    (("--workers",), 8, int, None, None, None, None, "max dataloader workers per process"),
    (("--optimizer",), None, None, ("auto", "SGD", "Adam", "AdamW", "MuSGD"), None, None, None,
     "auto: SGD for a YOLOv5/YOLOv7-schema model, Ultralytics' optimizer=auto (AdamW or MuSGD) for an "
     "Ultralytics-schema one (docs/models.md) (default auto; demo AdamW)"),
    (("--cos-lr",), False, None, None, 0, True, None, "cosine LR schedule (default linear)"),
    (("--label-smoothing",), 0.0, float, None, None, None, None, None),
    (("--patience",), 100, int, None, None, None, None, "early stopping: epochs without improvement (0: off)"),
    (("--close-mosaic",), 0, int, None, None, None, None, "train the last N epochs without mosaic"),
    (("--loss",), "auto", None, LOSSES, None, None, None, "auto: the loss the model's head declares"),
    (("--rect",), False, None, None, 0, True, None, "rectangular training batches (no mosaic)"),
    (("--sync-bn",), False, None, None, 0, True, None, "SyncBatchNorm in DDP"),
    (("--noval",), False, None, None, 0, True, None, "validate only after the final epoch"),
    (("--nosave",), False, None, None, 0, True, None, "save only the final checkpoint"),
    (("--noautoanchor",), False, None, None, 0, True, None, "skip the AutoAnchor check"),
    (("--noplots",), False, None, None, 0, True, None, "no label/batch/results plots"),
    (("--resume",), False, None, None, "?", True, None, "resume the latest (or the given) last.pt"),
    (("--project",), "runs/train", None, None, None, None, None, "parent folder of the results"),
    (("--name",), "exp", None, None, None, None, None, "results folder name (exp, exp2, ... unless --exist-ok)"),
    (("--exist-ok",), False, None, None, 0, True, None, "reuse <project>/<name> if it exists"),
    (("--seed",), 0, int, None, None, None, None, None),
    (("--freeze",), (0,), int, None, "+", None, "N", None),
    (("--cache",), None, None, ("ram", "disk"), "?", "ram", None, None),
    (("--single-cls",), False, None, None, 0, True, None, None),
    (("--multi-scale",), False, None, None, 0, True, None, None),
    (("--image-weights",), False, None, None, 0, True, None, None),
    (("--json",), False, None, None, 0, True, None, "end with one JSON line: the final metrics and paths"),
]


def parser_of(module) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    module.configure_parser(parser)
    return parser


def actions_by_flag(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {action.option_strings[0]: action for action in parser._actions if action.option_strings}


@pytest.mark.parametrize("flag", TRAIN_FLAGS, ids=lambda flag: flag[0][0])
def test_train_keeps_every_flag(flag):
    spellings, default, kind, choices, nargs, const, metavar, help_text = flag
    action = actions_by_flag(parser_of(train))[spellings[0]]
    assert tuple(action.option_strings) == spellings and action.default == default
    assert getattr(action.type, "__name__", None) == getattr(kind, "__name__", None)  # int, or int within bounds
    assert tuple(action.choices or ()) == (("auto", *loss_names()) if choices is LOSSES else choices or ())
    assert (action.nargs, action.const, action.metavar) == (nargs, const, metavar)
    assert action.help == help_text if help_text is not None else action.help


def test_every_declared_option_is_a_train_flag_and_an_ablate_one_unless_set_per_run():
    declared = {f.name for f in dataclasses.fields(TrainConfig) if OPTION in f.metadata}
    train_dests = {a.dest for a in parser_of(train)._actions}
    ablate_actions = {a.dest: a for a in parser_of(ablate)._actions}
    assert declared <= train_dests
    for name in declared - PER_RUN_OPTIONS:
        shared = next(a for a in parser_of(train)._actions if a.dest == name)
        mine = ablate_actions[name]
        assert (mine.option_strings, mine.default, mine.type, mine.help) == (
            shared.option_strings, shared.default, shared.type, shared.help)


def test_flags_parse_into_the_train_config():
    args = parser_of(train).parse_args(["--img-size", "320", "--batch-size", "8", "--cos-lr", "--resume",
                                        "--save-period", "5", "--optimizer", "AdamW", "--device", "cpu"])
    config = config_from_args(args, TrainConfig)
    assert (config.img, config.batch, config.cos_lr, config.resume, config.save_period) == (320, 8, True, True, 5)
    assert (config.optimizer, config.device, config.epochs, config.project) == ("AdamW", "cpu", None, "runs/train")
    resume = parser_of(train).parse_args(["--resume", "x/last.pt"])
    assert config_from_args(resume, TrainConfig).resume == "x/last.pt"
    assert config_from_args(parser_of(train).parse_args([]), TrainConfig) == TrainConfig()


def test_ablate_hands_the_training_flags_to_every_run(monkeypatch):
    seen = {}

    def fake_ablation(config):
        seen["config"] = config
        return AblationResult([], [], config.seeds, 0, config.bootstrap), "nowhere"

    monkeypatch.setattr(ablate, "run_ablation", fake_ablation)
    monkeypatch.setattr(ablate, "markdown_report", lambda *args: "")
    args = parser_of(ablate).parse_args(["--blocks", "SE,CBAM", "--epochs", "3", "--img", "64", "--optimizer", "AdamW",
                                         "--save-period", "1", "--device", "cpu", "--seeds", "2", "--resume",
                                         "--project", "runs/x"])
    assert ablate.run(args) == 0
    config = seen["config"]
    assert config.blocks == ("SE", "CBAM") and config.seeds == (0, 1) and config.resume and config.project == "runs/x"
    assert config.train == TrainConfig(epochs=3, img=64, optimizer="AdamW", save_period=1, device="cpu")
