"""``yolo-attn ablate``: train attention-block variants side by side and say whether each beats the base and a fair
control, with the statistics to back it."""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import asdict
from typing import Any

from yolo_attn.commands.common import (
    add_config_arguments,
    add_json_argument,
    add_run_dir_arguments,
    bounded,
    config_from_args,
    print_json,
)
from yolo_attn.commands.insert import add_rewire_argument
from yolo_attn.engine.ablation import MIN_RESAMPLES, PER_RUN_OPTIONS, AblationConfig, parse_seeds, run_ablation
from yolo_attn.engine.ablation_report import markdown_report
from yolo_attn.engine.ablation_summary import AblationResult
from yolo_attn.engine.options import NON_NEGATIVE, Bounds
from yolo_attn.engine.trainer import TrainConfig

DEFAULTS = AblationConfig(blocks=())
SCALE_OPTIONS = ("jobs", "executor", "ray_address")  # AblationConfig's own options (declared there)


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
                   "Two or more give mean ± std and an interval over seeds; a verdict needs three or more")
    p.add_argument("--controls", action="store_true",
                   help="also train a matched control (a plain residual conv block with the parameters of the largest "
                   "attention block, at its position) and the next model scale, and compare every block with both")
    p.add_argument("--bootstrap", type=bounded(int, Bounds(MIN_RESAMPLES)), default=DEFAULTS.bootstrap, metavar="N",
                   help="bootstrap resamples of the validation images for the intervals (at least 1000; default "
                   "%(default)s)")
    add_run_dir_arguments(p, DEFAULTS.project)
    p.add_argument("--resume", action="store_true",
                   help="continue <project>/<name>: skip finished (variant, seed) runs, retry failed ones")
    p.add_argument("--cam", type=bounded(int, NON_NEGATIVE), default=DEFAULTS.cam, metavar="N",
                   help="also draw every variant's Grad-CAM on the first N validation images (cam.png)")
    scale = p.add_argument_group("scale out", "run the (variant, seed) pairs at once, on this machine or a Ray cluster")
    add_config_arguments(scale, AblationConfig, only=SCALE_OPTIONS)
    add_json_argument(p, '{"save_dir": ..., "variants": [...], "comparisons": [...]}')


def run(args: argparse.Namespace) -> int:
    config = AblationConfig(
        blocks=tuple(args.blocks.split(",")), base=args.base, after=tuple(args.after) if args.after else None,
        replace=args.replace, args=args.args, rewire_all=args.rewire_all,
        train=config_from_args(args, TrainConfig, exclude=PER_RUN_OPTIONS),
        seeds=parse_seeds(args.seeds), project=args.project, name=args.name, exist_ok=args.exist_ok,
        resume=args.resume, cam=args.cam, controls=args.controls, bootstrap=args.bootstrap,
        **{name: getattr(args, name) for name in SCALE_OPTIONS},
    )
    result, save_dir = run_ablation(config)
    print(markdown_report(result))
    files = "ablation.html, ablation.md, ablation.csv, delta.png, ablation.png" + (", cam.png" if args.cam else "")
    print(f"ablation results in {save_dir} ({files})")
    if args.json:
        print_json(json_result(result, str(save_dir)))
    failed = [f"{s.name} seed {seed}" for s in result.summaries for seed in s.failed]
    if failed:
        print(f"ablate: {len(failed)} run(s) failed ({', '.join(failed)}); rerun with --resume to retry them",
              file=sys.stderr)
        return 1
    return 0


def json_result(result: AblationResult, save_dir: str) -> dict:
    """The result as plain JSON values (non-finite numbers as null): each variant (cost, mean/std per metric, runs)
    and each comparison (estimate, Holm p, simultaneous interval, power, verdict)."""
    variants = [{
        "variant": s.name, "kind": s.variant.kind, "position": s.variant.position,
        "cost": asdict(s.cost) if s.cost else None,
        "metrics": {m: {"mean": mean, "std": std} for m, (mean, std) in s.metrics.items()},
        "runs": [{"seed": r.seed, "ok": r.ok, "metrics": r.metrics, "wall_s": r.wall_s, "error": r.error,
                  "folder": str(r.folder)} for r in s.runs],
    } for s in result.summaries]
    return plain({"save_dir": save_dir, "too_small": result.too_small, "family": result.family,
                  "variants": variants, "comparisons": [asdict(c) for c in result.comparisons]})


def plain(value: Any) -> Any:
    """``value`` with tuples as lists and NaN/infinity as None (strict JSON)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
