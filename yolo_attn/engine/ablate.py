"""``yolo-attn ablate``: train attention-block variants of one base model under identical conditions
and tabulate accuracy beside cost.

Every variant (the base model is always one) gets the same data, hyperparameters, seed and data
order; pretrained ``--weights`` transfer wherever shapes match. Each variant trains in its own
folder under ``<project>/<name>``; rerunning with ``--resume`` skips finished variants and resumes
a half-trained one from its ``last.pt``. Results: ``ablation.csv``, ``ablation.md`` and
``ablation.png`` (mAP50-95 against GFLOPs).
"""

from __future__ import annotations

import argparse
import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from yolo_attn.errors import UserError

PACKAGE_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
DEFAULT_BASE = PACKAGE_CONFIGS / "models" / "yolov5n.yaml"
BASE = "base"
RESULT_FILE = "ablation-result.json"


@dataclass(frozen=True)
class Variant:
    """One model to train: its name, where the block went and the YAML text."""

    name: str
    position: str
    yaml_text: str


@dataclass(frozen=True)
class VariantResult:
    """One row of the ablation table."""

    variant: str
    position: str
    params: int
    gflops: float
    cpu_ms: float | None
    gpu_ms: float | None
    precision: float
    recall: float
    map50: float
    map50_95: float
    delta_map50_95: float
    wall_s: float


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base", help=f"base model YAML (default {DEFAULT_BASE.relative_to(PACKAGE_CONFIGS.parent)})")
    p.add_argument("--blocks", required=True, help="comma-separated registered blocks, e.g. CBAM,GAMAttention,SE")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--after", type=int, nargs="+", metavar="IDX",
                       help="insert each block after each of these layers (default: the last backbone layer)")
    where.add_argument("--replace", type=int, metavar="IDX", help="replace layer IDX by each block instead")
    p.add_argument("--args", default=None,
                   help="YAML args for every block (default: each block's example args fitted to the layer's channels)")
    p.add_argument("--weights", help="pretrained weights transferred into every variant where shapes match")
    p.add_argument("--data", help="dataset YAML (default: the built-in synthetic demo set)")
    p.add_argument("--hyp", help="hyperparameter YAML (default as yolo-attn train)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per variant (default as yolo-attn train)")
    p.add_argument("--img", "--img-size", dest="img", type=int, default=None, help="image size (default as train)")
    p.add_argument("--batch", "--batch-size", dest="batch", type=int, default=16)
    p.add_argument("--device", default="", help="cpu or 0")
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--project", default="runs/ablate")
    p.add_argument("--name", default="exp")
    p.add_argument("--resume", action="store_true", help="continue <project>/<name>: skip finished variants")
    p.add_argument("--json", action="store_true", help="end with one JSON line: the table rows")


def plan_variants(base_text: str, blocks: list[str], after: list[int] | None, replace: int | None,
                  args: str | None) -> list[Variant]:
    """The base model plus one variant per block and position."""
    from yolo_attn.nn.yaml_edit import default_block_args, insert_block, replace_block

    base_yaml = yaml.safe_load(base_text)
    variants = [Variant(BASE, "-", base_text)]
    if replace is not None:
        for block in blocks:
            block_args = args if args is not None else default_block_args(base_yaml, replace, block)
            variants.append(Variant(f"{block}-replace{replace}", f"replace {replace}",
                                    replace_block(base_text, replace, block, block_args)))
        return variants
    positions = after if after is not None else [len(base_yaml["backbone"]) - 1]
    for block in blocks:
        for index in positions:
            block_args = args if args is not None else default_block_args(base_yaml, index, block)
            variants.append(Variant(f"{block}-after{index}", f"after {index}",
                                    insert_block(base_text, index, block, block_args)))
    return variants


def latency_ms(model: torch.nn.Module, img_size: int, device: torch.device, repeats: int = 10) -> float:
    """Fastest eval forward of one ``img_size`` image, in ms."""
    import time

    model = model.to(device).eval()
    x = torch.zeros(1, 3, img_size, img_size, device=device)
    times = []
    with torch.no_grad():
        model(x)
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            model(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append((time.perf_counter() - start) * 1e3)
    return min(times)


def train_variant(variant: Variant, save_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Train (or resume, or just read back) one variant; returns its train summary."""
    from yolo_attn.checkpoint import load_checkpoint
    from yolo_attn.engine.train import train

    folder = save_dir / variant.name
    result_file = folder / RESULT_FILE
    if result_file.is_file():
        print(f"ablate: {variant.name} already trained, skipping")
        return json.loads(result_file.read_text())
    last = folder / "weights" / "last.pt"
    cfg = save_dir / "models" / f"{variant.name}.yaml"
    checkpoint = load_checkpoint(last) if last.is_file() else None
    if checkpoint is not None and run_finished(checkpoint):
        # stopped after its final save, before the result was recorded
        summary = finished_run_summary(folder, float(checkpoint.get("wall_s", float("nan"))))
    elif checkpoint is not None:
        print(f"ablate: resuming {variant.name} from {last}")
        summary = train(resume=str(last))
    else:
        cfg.parent.mkdir(parents=True, exist_ok=True)
        cfg.write_text(variant.yaml_text, encoding="utf-8")
        print(f"ablate: training {variant.name} ({variant.position})")
        summary = train(
            cfg=str(cfg), weights=args.weights, data=args.data, hyp=args.hyp, epochs=args.epochs, img=args.img,
            batch=args.batch, device=args.device, workers=args.workers, seed=args.seed,
            project=str(save_dir), name=variant.name, exist_ok=True,
        )
    result_file.write_text(json.dumps(summary))
    return summary


def run_finished(checkpoint: dict[str, Any]) -> bool:
    return int(checkpoint["epoch"]) + 1 >= int((checkpoint.get("train_args") or {}).get("epochs", 0))


def finished_run_summary(folder: Path, wall_s: float) -> dict[str, Any]:
    """The train summary of a finished run, read back from its ``results.csv``."""
    with open(folder / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    last = {k.strip(): v for k, v in rows[-1].items()}
    return {
        "precision": float(last["metrics/precision"]), "recall": float(last["metrics/recall"]),
        "map50": float(last["metrics/mAP_0.5"]), "map50_95": float(last["metrics/mAP_0.5:0.95"]),
        "epochs": len(rows), "wall_s": wall_s,
        "best": str(folder / "weights" / "best.pt"), "last": str(folder / "weights" / "last.pt"),
    }


def measure_variant(variant: Variant, summary: dict[str, Any], img_size: int, base_map: float) -> VariantResult:
    """Cost of the trained model (params, GFLOPs, latency) beside its accuracy."""
    from yolo_attn.checkpoint import load_model
    from yolo_attn.nn.summary import count_gflops, count_params

    model = load_model(summary["best"] if Path(summary["best"]).is_file() else summary["last"]).model
    gpu_ms = latency_ms(model, img_size, torch.device("cuda")) if torch.cuda.is_available() else None
    return VariantResult(
        variant=variant.name, position=variant.position, params=count_params(model),
        gflops=round(count_gflops(model, img_size), 3), cpu_ms=round(latency_ms(model, img_size, torch.device("cpu")), 2),
        gpu_ms=round(gpu_ms, 2) if gpu_ms is not None else None,
        precision=summary["precision"], recall=summary["recall"], map50=summary["map50"], map50_95=summary["map50_95"],
        delta_map50_95=summary["map50_95"] - base_map, wall_s=summary["wall_s"],
    )


def write_reports(results: list[VariantResult], save_dir: Path) -> None:
    rows = [asdict(r) for r in results]
    with open(save_dir / "ablation.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (save_dir / "ablation.md").write_text(markdown_table(results) + "\n", encoding="utf-8")
    plot_accuracy_vs_cost(results, save_dir / "ablation.png")


def markdown_table(results: list[VariantResult]) -> str:
    header = ("| variant | position | params | GFLOPs | CPU ms | GPU ms | P | R | mAP50 | mAP50-95 | Δ mAP50-95 | wall s |\n"
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    lines = [header]
    for r in results:
        gpu = f"{r.gpu_ms:.2f}" if r.gpu_ms is not None else "-"
        lines.append(
            f"| {r.variant} | {r.position} | {r.params:,} | {r.gflops:.3f} | {r.cpu_ms:.1f} | {gpu} | {r.precision:.3f} | "
            f"{r.recall:.3f} | {r.map50:.3f} | {r.map50_95:.3f} | {r.delta_map50_95:+.3f} | {r.wall_s:.0f} |"
        )
    return "\n".join(lines)


def plot_accuracy_vs_cost(results: list[VariantResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), tight_layout=True)
    for r in results:
        ax.scatter(r.gflops, r.map50_95, marker="s" if r.variant == BASE else "o", label=r.variant)
    ax.legend(fontsize=8)
    ax.set_xlabel("GFLOPs")
    ax.set_ylabel("mAP50-95")
    ax.set_title("attention blocks: accuracy vs cost")
    fig.savefig(path, dpi=150)
    plt.close(fig)


def run_cli(args: argparse.Namespace) -> int:
    from yolo_attn.utils.paths import increment_path

    base = Path(args.base) if args.base else DEFAULT_BASE
    if not base.is_file():
        raise UserError(f"--base {base}: model YAML not found")
    blocks = [b.strip() for b in args.blocks.split(",") if b.strip()]
    if not blocks:
        raise UserError("--blocks: name at least one block, e.g. --blocks CBAM,SE")
    target = Path(args.project) / args.name
    if args.resume and not target.is_dir():
        raise UserError(f"--resume: {target} does not exist")
    save_dir = target if args.resume else increment_path(target)
    save_dir.mkdir(parents=True, exist_ok=True)
    variants = plan_variants(base.read_text(encoding="utf-8"), blocks, args.after, args.replace, args.args)
    summaries = [train_variant(v, save_dir, args) for v in variants]
    img_size = int(yaml.safe_load((save_dir / BASE / "opt.yaml").read_text())["img"])
    base_map = summaries[0]["map50_95"]
    results = [measure_variant(v, s, img_size, base_map) for v, s in zip(variants, summaries)]
    write_reports(results, save_dir)
    print(markdown_table(results))
    print(f"ablation results in {save_dir} (ablation.csv, ablation.md, ablation.png)")
    if args.json:
        print(json.dumps([asdict(r) for r in results]))
    return 0
