"""``yolo-attn train``: train a model with the flags of YOLOv5's ``train.py``, generated from
:class:`~yolo_attn.engine.trainer.TrainConfig`'s fields."""

from __future__ import annotations

import argparse

from yolo_attn.commands.common import (
    add_config_arguments,
    add_json_argument,
    add_run_dir_arguments,
    config_from_args,
    print_json,
)
from yolo_attn.engine.trainer import TrainConfig, train


def configure_parser(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, TrainConfig)
    add_run_dir_arguments(p, TrainConfig.project)
    add_json_argument(p, "the final metrics and paths")


def run(args: argparse.Namespace) -> int:
    summary = train(config_from_args(args, TrainConfig))
    if args.json and summary is not None:
        print_json(summary)
    return 0
