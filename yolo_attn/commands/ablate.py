"""``yolo-attn ablate``: train attention-block variants side by side and tabulate accuracy beside cost."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from yolo_attn.commands.common import (
    add_config_arguments,
    add_json_argument,
    add_run_dir_arguments,
    bounded,
    config_from_args,
    print_json,
)
from yolo_attn.commands.insert import add_rewire_argument
from yolo_attn.engine.ablation import PER_RUN_OPTIONS, AblationConfig, parse_seeds, run_ablation
from yolo_attn.engine.ablation_report import VariantSummary, markdown_report
from yolo_attn.engine.options import NON_NEGATIVE
from yolo_attn.engine.trainer import TrainConfig

DEFAULTS = AblationConfig(blocks=())


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base", default=DEFAULTS.base, help="base model YAML or built-in name (default %(default)s)")
    p.add_argument("--blocks", required=True, help="comma-separated registered blocks, e.g. CBAM,GAMAttention,SE")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--after", type=bounded(int, NON_NEGATIVE), nargs="+", metavar="IDX",
                       help="insert each block after each of these layers (default: the last backbone layer)")
    where.add_argument("--replace", type=bounded(int, NON_NEGATIVE), metavar="IDX",
                       help="replace layer IDX by each block instead")
    p.add_argument("--args", default=None,
                   help="YAML args for every block (default: each block's example args fitted to the layer's channels)")
    add_rewire_argument(p)
    training = p.add_argument_group("training", "the options of yolo-attn train, for every (variant, seed) run "
                                    "(--weights go layer by layer into every variant)")
    add_config_arguments(training, TrainConfig, exclude=PER_RUN_OPTIONS)
    p.add_argument("--seeds", default="1", metavar="N|S,S,...",
                   help="train every variant once per seed: 3 means 0,1,2; 0,5,7 lists them (default 1: seed 0). "
                   "Two or more give mean ± std and a paired confidence interval for Δ")
    add_run_dir_arguments(p, DEFAULTS.project)
    p.add_argument("--resume", action="store_true",
                   help="continue <project>/<name>: skip finished (variant, seed) runs")
    p.add_argument("--cam", type=bounded(int, NON_NEGATIVE), default=DEFAULTS.cam, metavar="N",
                   help="also draw every variant's Grad-CAM on the first N validation images (cam.png)")
    add_json_argument(p, '{"save_dir": ..., "rows": [the table rows]}')


def run(args: argparse.Namespace) -> int:
    config = AblationConfig(
        blocks=tuple(args.blocks.split(",")), base=args.base, after=tuple(args.after) if args.after else None,
        replace=args.replace, args=args.args, rewire_all=args.rewire_all,
        train=config_from_args(args, TrainConfig, exclude=PER_RUN_OPTIONS),
        seeds=parse_seeds(args.seeds), project=args.project, name=args.name, exist_ok=args.exist_ok,
        resume=args.resume, cam=args.cam,
    )
    summaries, save_dir = run_ablation(config)
    print(markdown_report(summaries, config.seeds))
    print(f"ablation results in {save_dir} (ablation.csv, ablation.md, ablation.png{', cam.png' if args.cam else ''})")
    if args.json:
        print_json({"save_dir": str(save_dir), "rows": [json_row(s) for s in summaries]})
    return 0


def json_row(summary: VariantSummary) -> dict:
    """A table row as plain values: cost, mean/std per metric, the paired Δ (or null) and the runs."""
    row = asdict(summary)
    row["metrics"] = {m: {"mean": mean, "std": std} for m, (mean, std) in summary.metrics.items()}
    return row
