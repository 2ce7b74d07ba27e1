"""Ablation: train attention-block variants of one base model under identical conditions and tabulate
accuracy beside cost (``yolo-attn ablate``).

Every variant (the base model is always one) gets the same data, hyperparameters, seed and data
order; pretrained ``--weights`` transfer wherever shapes match. Each variant trains in its own
folder under ``<project>/<name>``; rerunning with ``--resume`` skips finished variants and resumes
a half-trained one from its ``last.pt``. Results: ``ablation.csv``, ``ablation.md`` and
``ablation.png`` (mAP50-95 against GFLOPs).
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from yolo_attn.checkpoint import load_checkpoint, load_model
from yolo_attn.engine import results
from yolo_attn.engine.trainer import TrainConfig, train
from yolo_attn.errors import UserError
from yolo_attn.nn.summary import count_gflops, count_params
from yolo_attn.nn.yaml_edit import default_block_args, insert_block, replace_block
from yolo_attn.utils.builtin import builtin_config
from yolo_attn.utils.paths import increment_path
from yolo_attn.utils.torch_utils import forward_latency_ms

DEFAULT_BASE = "yolov5n.yaml"
BASE = "base"
RESULT_FILE = "ablation-result.json"


@dataclass(frozen=True)
class AblationConfig:
    """What to compare and how to train each variant. ``after`` (layer indices) or ``replace`` (one
    index) place every block; neither: after the last backbone layer. ``args``: YAML args for every
    block (default: each block's example args fitted to the layer). The training options are those of
    :class:`~yolo_attn.engine.trainer.TrainConfig`; ``None`` keeps its defaults."""

    blocks: tuple[str, ...]
    base: str = DEFAULT_BASE
    after: tuple[int, ...] | None = None
    replace: int | None = None
    args: str | None = None
    weights: str | None = None
    data: str | None = None
    hyp: str | None = None
    epochs: int | None = None
    img: int | None = None
    batch: int = 16
    device: str = ""
    workers: int = 8
    seed: int = 0
    project: str = "runs/ablate"
    name: str = "exp"
    exist_ok: bool = False
    resume: bool = False
    cam: int = 0  # draw the CAM figure of every variant on this many validation images (yolo_attn.engine.cam)


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


def plan_variants(base_text: str, blocks: list[str], after: list[int] | None, replace: int | None,
                  args: str | None) -> list[Variant]:
    """The base model plus one variant per block and position."""
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


def train_variant(variant: Variant, save_dir: Path, config: AblationConfig) -> dict[str, Any]:
    """Train (or resume, or just read back) one variant; returns its train summary."""
    folder = save_dir / variant.name
    result_file = folder / RESULT_FILE
    if result_file.is_file():
        print(f"ablate: {variant.name} already trained, skipping")
        return json.loads(result_file.read_text())
    last = folder / "weights" / "last.pt"
    checkpoint = load_checkpoint(last) if last.is_file() else None
    if checkpoint is not None and run_finished(checkpoint):
        # stopped after its final save, before the result was recorded
        summary = finished_run_summary(folder, float((checkpoint["training"] or {}).get("wall_s", float("nan"))))
    elif checkpoint is not None:
        print(f"ablate: resuming {variant.name} from {last}")
        summary = train(resume=str(last))
    else:
        cfg = save_dir / "models" / f"{variant.name}.yaml"
        cfg.parent.mkdir(parents=True, exist_ok=True)
        cfg.write_text(variant.yaml_text, encoding="utf-8")
        print(f"ablate: training {variant.name} ({variant.position})")
        summary = train(TrainConfig(
            cfg=str(cfg), weights=config.weights, data=config.data, hyp=config.hyp, epochs=config.epochs,
            img=config.img, batch=config.batch, device=config.device, workers=config.workers, seed=config.seed,
            project=str(save_dir), name=variant.name, exist_ok=True,
        ))
    result_file.write_text(json.dumps(summary))
    return summary


def run_finished(checkpoint: dict[str, Any]) -> bool:
    return int(checkpoint["epoch"]) + 1 >= int((checkpoint.get("train_args") or {}).get("epochs", 0))


def finished_run_summary(folder: Path, wall_s: float) -> dict[str, Any]:
    """The train summary of a finished run, read back from its ``results.csv``."""
    metrics, epochs = results.final_metrics(folder / results.RESULTS_CSV)
    return {
        **metrics, "epochs": epochs, "wall_s": wall_s,
        "best": str(folder / "weights" / "best.pt"), "last": str(folder / "weights" / "last.pt"),
    }


def measure_variant(variant: Variant, summary: dict[str, Any], img_size: int, base_map: float) -> VariantResult:
    """Cost of the trained model (params, GFLOPs, latency) beside its accuracy."""
    model = load_model(summary["best"] if Path(summary["best"]).is_file() else summary["last"]).model
    cpu_ms = forward_latency_ms(model, torch.zeros(1, 3, img_size, img_size))
    gpu_ms = None
    if torch.cuda.is_available():
        gpu_ms = round(forward_latency_ms(model.cuda(), torch.zeros(1, 3, img_size, img_size, device="cuda")), 2)
    return VariantResult(
        variant=variant.name, position=variant.position, params=count_params(model),
        gflops=round(count_gflops(model, img_size), 3), cpu_ms=round(cpu_ms, 2), gpu_ms=gpu_ms,
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


def run_ablation(config: AblationConfig) -> tuple[list[VariantResult], Path]:
    """Train every variant (skipping finished ones on resume), measure them and write the reports."""
    base = builtin_config(config.base, "model")
    if not base.is_file():
        raise UserError(f"--base {config.base}: model YAML not found")
    blocks = [b.strip() for b in config.blocks if b.strip()]
    if not blocks:
        raise UserError("--blocks: name at least one block, e.g. --blocks CBAM,SE")
    target = Path(config.project) / config.name
    if config.resume and not target.is_dir():
        raise UserError(f"--resume: {target} does not exist")
    save_dir = target if config.resume else increment_path(target, config.exist_ok)
    save_dir.mkdir(parents=True, exist_ok=True)
    after = list(config.after) if config.after is not None else None
    variants = plan_variants(base.read_text(encoding="utf-8"), blocks, after, config.replace, config.args)
    summaries = [train_variant(v, save_dir, config) for v in variants]
    img_size = int(yaml.safe_load((save_dir / BASE / "opt.yaml").read_text())["img"])
    base_map = summaries[0]["map50_95"]
    measured = [measure_variant(v, s, img_size, base_map) for v, s in zip(variants, summaries)]
    write_reports(measured, save_dir)
    if config.cam:
        from yolo_attn.engine.cam import ablation_cam_figure  # the figure of issue 14, linked from ablation.md

        ablation_cam_figure(save_dir, [v.name for v in variants], summaries, config.cam, config.device)
    return measured, save_dir
