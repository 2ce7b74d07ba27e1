"""``yolo-attn train``: train a model with the flags of YOLOv5's ``train.py``."""

from __future__ import annotations

import argparse
import dataclasses

from yolo_attn.commands.common import add_device_argument, add_json_argument, add_run_dir_arguments, print_json
from yolo_attn.engine.trainer import DEMO_DEFAULTS, REGULAR_DEFAULTS, TrainConfig, train
from yolo_attn.losses import loss_names

DEFAULTS = TrainConfig()


def _default(key: str) -> str:
    return f"default {REGULAR_DEFAULTS[key]}; demo {DEMO_DEFAULTS[key]}"


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cfg", help="model YAML, or a built-in name such as yolov5s.yaml (with --weights: build this and "
                   "transfer the pretrained layers into their counterparts)")
    p.add_argument("--weights", help="initial weights: our checkpoint or an upstream YOLOv5/YOLOv7 .pt")
    p.add_argument("--transfer-report", action="store_true",
                   help="print which pretrained layer went into which model layer (--weights with --cfg)")
    p.add_argument("--bn-calibration", type=int, default=DEFAULTS.bn_calibration, metavar="N",
                   help="with --weights: re-estimate the BatchNorm statistics behind new layers on N training images "
                   "(0: off)")
    p.add_argument("--data", help="dataset YAML (default: the built-in synthetic demo set)")
    p.add_argument("--hyp", help=f"hyperparameter YAML or built-in name ({_default('hyp')})")
    p.add_argument("--epochs", type=int, help=_default("epochs"))
    p.add_argument("--batch", "--batch-size", dest="batch", type=int, default=DEFAULTS.batch,
                   help="total batch size over all processes")
    p.add_argument("--img", "--img-size", dest="img", type=int, help=f"train/val image size ({_default('img')})")
    add_device_argument(p)
    p.add_argument("--workers", type=int, default=DEFAULTS.workers, help="max dataloader workers per process")
    p.add_argument("--optimizer", choices=("SGD", "Adam", "AdamW"), help=_default("optimizer"))
    p.add_argument("--cos-lr", action="store_true", help="cosine LR schedule (default linear)")
    p.add_argument("--label-smoothing", type=float, default=DEFAULTS.label_smoothing)
    p.add_argument("--patience", type=int, default=DEFAULTS.patience, help="early stopping: epochs without improvement")
    p.add_argument("--close-mosaic", type=int, default=DEFAULTS.close_mosaic, help="train the last N epochs without mosaic")
    p.add_argument("--loss", choices=("auto", *loss_names()), default=DEFAULTS.loss,
                   help="auto: the loss the model's head declares")
    p.add_argument("--rect", action="store_true", help="rectangular training batches (no mosaic)")
    p.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm in DDP")
    p.add_argument("--noval", action="store_true", help="validate only after the final epoch")
    p.add_argument("--nosave", action="store_true", help="save only the final checkpoint")
    p.add_argument("--noautoanchor", action="store_true", help="skip the AutoAnchor check")
    p.add_argument("--noplots", action="store_true", help="no label/batch/results plots")
    p.add_argument("--resume", nargs="?", const=True, default=False, help="resume the latest (or the given) last.pt")
    add_run_dir_arguments(p, DEFAULTS.project)
    p.add_argument("--seed", type=int, default=DEFAULTS.seed)
    add_json_argument(p, "the final metrics and paths")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The parsed flags as a :class:`TrainConfig` (flags and config fields share their names)."""
    return TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)})


def run(args: argparse.Namespace) -> int:
    summary = train(config_from_args(args))
    if args.json and summary is not None:
        print_json(summary)
    return 0
