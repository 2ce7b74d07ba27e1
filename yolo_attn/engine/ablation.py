"""Ablation: train attention-block variants of one base model under identical conditions and tabulate
accuracy beside cost (``yolo-attn ablate``).

Every variant (the base model is always one) trains once per seed; a seed fixes the data order and
augmentation, the same for every variant. Pretrained ``--weights`` go layer by layer into their
counterparts (:func:`~yolo_attn.checkpoint.transfer_pretrained`). Each (variant, seed) pair trains in
``<project>/<name>/<variant>/seed<seed>``; rerunning with ``--resume`` skips finished pairs and
resumes a half-trained one from its ``last.pt``. Results (:mod:`~yolo_attn.engine.ablation_report`):
``ablation.csv``, ``ablation.md`` and ``ablation.png`` (mAP50-95 against GFLOPs, error bars over seeds).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from yolo_attn.checkpoint import load_checkpoint, load_model
from yolo_attn.engine import results
from yolo_attn.engine.ablation_report import METRICS, RunResult, VariantCost, VariantSummary, summarize, write_reports
from yolo_attn.engine.trainer import TrainConfig, TrainingInterrupted, train
from yolo_attn.errors import UserError
from yolo_attn.nn.builder import model_yaml_path
from yolo_attn.nn.summary import count_gflops, count_params
from yolo_attn.nn.yaml_edit import default_block_args, insert_block, pin_scale, replace_block, resolve_block_name
from yolo_attn.utils.paths import increment_path
from yolo_attn.utils.torch_utils import forward_latency_ms

DEFAULT_BASE = "yolov5n.yaml"
BASE = "base"
RESULT_FILE = "ablation-result.json"
# TrainConfig fields the ablation sets for each (variant, seed) run itself; the others come from ``train``
PER_RUN_OPTIONS = frozenset({"cfg", "seed", "resume", "project", "name", "exist_ok", "save_dir"})

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class AblationConfig:
    """What to compare and how to train each variant. ``after`` (layer indices) or ``replace`` (one
    index) place every block; neither: after the last backbone layer. ``args``: YAML args for every
    block (default: each block's example args fitted to the layer). Every variant trains once per seed of
    ``seeds`` with the options of ``train`` (its :data:`PER_RUN_OPTIONS` are set per run); ``project``,
    ``name``, ``exist_ok`` and ``resume`` are the ablation's own folder and resumption."""

    blocks: tuple[str, ...]
    base: str = DEFAULT_BASE
    after: tuple[int, ...] | None = None
    replace: int | None = None
    args: str | None = None
    rewire_all: bool = True  # every reader of the layer a block follows reads the block (as configs/attention)
    train: TrainConfig = field(default_factory=TrainConfig)
    seeds: tuple[int, ...] = (0,)
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


def plan_variants(base_text: str, blocks: list[str], after: list[int] | None, replace: int | None,
                  args: str | None, rewire_all: bool = True) -> list[Variant]:
    """The base model plus one variant per block and position (``rewire_all``: see
    :func:`~yolo_attn.nn.yaml_edit.insert_block`)."""
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
                                    insert_block(base_text, index, block, block_args, rewire_all=rewire_all)))
    return variants


def parse_seeds(text: str) -> tuple[int, ...]:
    """``--seeds``: ``"0,1,2"`` lists the seeds; a single number N means N seeds, 0..N-1."""
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"--seeds {text!r}: give a count (3 means 0,1,2) or a comma-separated list (0,1,2)") from None
    if "," not in text and len(values) == 1:
        values = list(range(values[0]))
    if not values or len(set(values)) != len(values) or min(values) < 0:
        raise UserError(f"--seeds {text!r}: need at least one seed, no repeats, none negative")
    return tuple(values)


def train_pair(variant: Variant, seed: int, save_dir: Path, config: AblationConfig) -> RunResult:
    """Train (or resume, or just read back) one variant with one seed in ``<variant>/seed<seed>``."""
    folder = save_dir / variant.name / f"seed{seed}"
    result_file = folder / RESULT_FILE
    if result_file.is_file():
        LOGGER.info(f"ablate: {variant.name} seed {seed} already trained, skipping")
        return run_result(variant, seed, json.loads(result_file.read_text()))
    last = folder / "weights" / "last.pt"
    checkpoint = load_checkpoint(last) if last.is_file() else None
    summary: dict[str, Any] | None
    if checkpoint is not None and run_finished(checkpoint):
        # stopped after its final save, before the result was recorded
        summary = finished_run_summary(folder, float((checkpoint["training"] or {}).get("wall_s", float("nan"))))
    elif checkpoint is not None:
        LOGGER.info(f"ablate: resuming {variant.name} seed {seed} from {last}")
        summary = train(resume=str(last))
    else:
        cfg = save_dir / "models" / f"{variant.name}.yaml"
        cfg.parent.mkdir(parents=True, exist_ok=True)
        cfg.write_text(variant.yaml_text, encoding="utf-8")
        LOGGER.info(f"ablate: training {variant.name} ({variant.position}), seed {seed}")
        summary = train(dataclasses.replace(config.train, cfg=str(cfg), seed=seed, resume=False, save_dir=None,
                                            project=str(folder.parent), name=folder.name, exist_ok=True))
    assert summary is not None  # one process: train() returns None only in DDP processes other than rank 0
    result_file.write_text(json.dumps(summary))
    return run_result(variant, seed, summary)


def run_result(variant: Variant, seed: int, summary: dict[str, Any]) -> RunResult:
    return RunResult(variant.name, seed, **{k: float(summary[k]) for k in METRICS}, wall_s=float(summary["wall_s"]))


def run_finished(checkpoint: dict[str, Any]) -> bool:
    return int(checkpoint["epoch"]) + 1 >= int((checkpoint.get("train_args") or {}).get("epochs", 0))


def finished_run_summary(folder: Path, wall_s: float) -> dict[str, Any]:
    """The train summary of a finished run, read back from its ``results.csv``."""
    metrics, epochs = results.final_metrics(folder / results.RESULTS_CSV)
    return {
        **metrics, "epochs": epochs, "wall_s": wall_s,
        "best": str(folder / "weights" / "best.pt"), "last": str(folder / "weights" / "last.pt"),
    }


def trained_weights(folder: Path) -> Path:
    """A run folder's ``best.pt``, or its ``last.pt`` when it has no best."""
    best = folder / "weights" / "best.pt"
    return best if best.is_file() else folder / "weights" / "last.pt"


def measure_cost(folder: Path, img_size: int) -> VariantCost:
    """Params, GFLOPs and latency of a variant's trained model (read from one of its runs in ``folder``)."""
    model = load_model(trained_weights(folder)).model
    cpu_ms = forward_latency_ms(model, torch.zeros(1, 3, img_size, img_size))
    gpu_ms = None
    if torch.cuda.is_available():
        gpu_ms = round(forward_latency_ms(model.cuda(), torch.zeros(1, 3, img_size, img_size, device="cuda")), 2)
    return VariantCost(count_params(model), round(count_gflops(model, img_size), 3), round(cpu_ms, 2), gpu_ms)


def base_text(name: str) -> str:
    """The base YAML's text with the scale its name picks written in (:func:`~yolo_attn.nn.yaml_edit.pin_scale`),
    so every variant file builds at that scale whatever it is called."""
    return pin_scale(model_yaml_path(name).read_text(encoding="utf-8"), name)


def run_ablation(config: AblationConfig) -> tuple[list[VariantSummary], Path]:
    """Train every (variant, seed) pair (skipping finished ones on resume), measure each variant, summarise
    over seeds and write the reports."""
    base = model_yaml_path(config.base)
    if not base.is_file():
        raise UserError(f"--base {config.base}: model YAML not found")
    blocks = [resolve_block_name(b.strip()) for b in config.blocks if b.strip()]
    if not blocks:
        raise UserError("--blocks: name at least one block, e.g. --blocks CBAM,SE")
    if not config.seeds:
        raise UserError("--seeds: give at least one seed")
    target = Path(config.project) / config.name
    if config.resume and not target.is_dir():
        raise UserError(f"--resume: {target} does not exist")
    save_dir = target if config.resume else increment_path(target, config.exist_ok)
    save_dir.mkdir(parents=True, exist_ok=True)
    after = list(config.after) if config.after is not None else None
    variants = plan_variants(base_text(config.base), blocks, after, config.replace, config.args, config.rewire_all)
    try:
        runs = {v.name: [train_pair(v, seed, save_dir, config) for seed in config.seeds] for v in variants}
    except TrainingInterrupted:
        raise TrainingInterrupted(f"interrupted; continue the ablation with the same command and --resume "
                                  f"(it picks up {save_dir})") from None
    first = f"seed{config.seeds[0]}"
    img_size = int(yaml.safe_load((save_dir / BASE / first / "opt.yaml").read_text())["img"])
    summaries = [
        summarize(v.name, v.position, measure_cost(save_dir / v.name / first, img_size), runs[v.name], runs[BASE])
        for v in variants
    ]
    write_reports(summaries, config.seeds, save_dir)
    if config.cam:
        from yolo_attn.engine.cam import ablation_cam_figure  # the variants' Grad-CAM grid, linked from ablation.md

        weights = [trained_weights(save_dir / v.name / first) for v in variants]
        ablation_cam_figure(save_dir, [v.name for v in variants], weights, config.cam, config.train.device,
                            first_run=save_dir / BASE / first)
    return summaries, save_dir
