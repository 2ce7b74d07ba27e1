"""Ablation: train attention-block variants of one base model under identical conditions and say, with honest
statistics, whether each block beats the base and a fair control (``yolo-attn ablate``).

Every variant (the base model is always one; with ``controls`` also a matched plain-convolution control per
position and the next model scale, :mod:`~yolo_attn.engine.ablation_variants`) trains once per seed; a seed fixes
the data order and augmentation, the same for every variant. Pretrained ``--weights`` go layer by layer into their
counterparts (:func:`~yolo_attn.checkpoint.transfer_pretrained`). Each (variant, seed) pair trains in
``<project>/<name>/<variant>/seed<seed>`` and its final weights are validated once more, keeping each image's
matched detections (for the bootstrap, :mod:`~yolo_attn.engine.ablation_images`), COCO's size metrics and per-class
AP. A pair that fails is marked and enters no difference; rerunning with ``--resume`` skips finished pairs, resumes
half-trained or failed ones from their ``last.pt``. Cost is measured for all variants together at the end
(:mod:`~yolo_attn.engine.latency`). Statistics: :mod:`~yolo_attn.engine.ablation_summary`; reports (``ablation.md``,
``ablation.csv``, ``ablation.html``, ``delta.png``, ``ablation.png``): :mod:`~yolo_attn.engine.ablation_report`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from yolo_attn.checkpoint import load_checkpoint, load_model
from yolo_attn.data.synthetic import generate_demo_dataset
from yolo_attn.engine import results
from yolo_attn.engine.ablation_images import ImageStats, check_same_images
from yolo_attn.engine.ablation_report import write_html, write_reports
from yolo_attn.engine.ablation_stats import resample_counts
from yolo_attn.engine.ablation_summary import (
    METRICS,
    SIZE_METRICS,
    AblationResult,
    Comparison,
    PairRun,
    VariantCost,
    adjust,
    compare,
    planned_pairs,
    summarize,
    with_verdicts,
)
from yolo_attn.engine.ablation_variants import Variant, matched_controls, next_scale, plan_variants
from yolo_attn.engine.executors import EXECUTORS, make_executor
from yolo_attn.engine.latency import RUNS, WARMUP, interleaved_latency
from yolo_attn.engine.options import POSITIVE, option
from yolo_attn.engine.trainer import TrainConfig, TrainingInterrupted, train
from yolo_attn.engine.validator import EvalConfig, build_eval_loader, evaluate
from yolo_attn.errors import UserError
from yolo_attn.metrics import DetectionStats
from yolo_attn.nn.builder import model_yaml_path
from yolo_attn.nn.model import max_stride
from yolo_attn.nn.summary import count_gflops, count_params
from yolo_attn.nn.yaml_edit import pin_scale, resolve_block_name
from yolo_attn.utils.device import select_device
from yolo_attn.utils.paths import increment_path

DEFAULT_BASE = "yolov5n.yaml"
RESULT_FILE = "ablation-result.json"  # the training summary of a finished pair
EVAL_FILE = "ablation-eval.json"  # its final validation: metrics, COCO size metrics, per-class AP
IMAGES_FILE = "ablation-images.npz"  # its per-image statistics
BOOTSTRAP_SEED = 0
MIN_RESAMPLES = 1000  # fewer leave the percentile interval's ends noisy
# TrainConfig fields the ablation sets for each (variant, seed) run itself; the others come from ``train``
PER_RUN_OPTIONS = frozenset({"cfg", "seed", "resume", "project", "name", "exist_ok", "save_dir"})

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class AblationConfig:
    """What to compare and how to train each variant. ``after`` (layer indices) or ``replace`` (one
    index) place every block; neither: after the last backbone layer. ``args``: YAML args for every
    block (default: each block's example args fitted to the layer). Every variant trains once per seed of
    ``seeds`` with the options of ``train`` (its :data:`PER_RUN_OPTIONS` are set per run); ``project``,
    ``name``, ``exist_ok`` and ``resume`` are the ablation's own folder and resumption. ``controls``: add the
    matched control and the next scale; ``bootstrap``: resamples of the validation images."""

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
    controls: bool = False
    bootstrap: int = 1000
    jobs: int = option(1, "run up to N (variant, seed) pairs at once, each in its own process; on the CPU the cores "
                       "are divided among them, --device 0,1,2,3 gives each one GPU, round robin", metavar="N",
                       bounds=POSITIVE)
    executor: str = option("local", "where the pairs run: local processes, or one Ray task each (pip install "
                           "'yolo-attn[ray]'; the run folder must be on storage every node sees)", choices=EXECUTORS)
    ray_address: str | None = option(None, "with --executor ray: join this running cluster (default: start Ray on "
                                     "this machine)", metavar="ADDRESS")


@dataclass(frozen=True)
class PairJob:
    """One (variant, seed) pair of an ablation, as an executor hands it to :func:`run_job`."""

    variant: Variant
    seed: int
    save_dir: Path
    config: AblationConfig


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


def train_pair(variant: Variant, seed: int, folder: Path, save_dir: Path, config: AblationConfig) -> dict[str, Any]:
    """Train (or resume, or just read back) one variant with one seed in ``folder``; its training summary."""
    result_file = folder / RESULT_FILE
    if result_file.is_file():
        LOGGER.info(f"ablate: {variant.name} seed {seed} already trained, skipping")
        return json.loads(result_file.read_text())
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
    return summary


def evaluate_pair(folder: Path, device: str) -> dict[str, Any]:
    """Validate a finished pair's final weights as its training validated them (fused EMA, the same image size and
    batch), with COCOeval; keep the per-image statistics in ``IMAGES_FILE``. Read back when done before."""
    cached = folder / EVAL_FILE
    if cached.is_file() and (folder / IMAGES_FILE).is_file():
        return json.loads(cached.read_text())
    opt = yaml.safe_load((folder / "opt.yaml").read_text())
    model = load_model(folder / "weights" / "last.pt", fuse=True).model
    config = EvalConfig(img_size=int(opt["img"]), batch_size=2 * int(opt["batch"]), workers=int(opt["workers"]),
                        device=device, coco=True)
    loader = build_eval_loader(opt["data"], max_stride(model), config)
    stats = DetectionStats(loader.dataset.split.nc)
    result = evaluate(model, config=config, dataloader=loader, stats=stats)
    ImageStats.from_detection_stats(stats, list(loader.dataset.im_files)).save(folder / IMAGES_FILE)
    evaluation = {
        **{k: float(result[k]) for k in METRICS}, **{k: float(result["coco_stats"][k]) for k in SIZE_METRICS},
        "per_class": {row["name"]: [row["map50_95"], row["instances"]] for row in result["per_class"]},
        "images": int(result["images"]),
    }
    cached.write_text(json.dumps(evaluation))
    return evaluation


def run_pair(variant: Variant, seed: int, save_dir: Path, config: AblationConfig) -> PairRun:
    """Train and evaluate one pair; a pair that fails (anything but bad input or an interrupt) is logged and
    returned as failed, and the ablation goes on."""
    folder = save_dir / variant.name / f"seed{seed}"
    try:
        summary = train_pair(variant, seed, folder, save_dir, config)
        evaluation = evaluate_pair(folder, config.train.device)
    except UserError:
        raise
    except Exception as e:  # a failed run must not take the others with it
        return failed_pair(variant.name, seed, folder, f"{type(e).__name__}: {e}")
    per_class = {name: (float(ap), int(n)) for name, (ap, n) in evaluation["per_class"].items()}
    metrics = {k: float(evaluation[k]) for k in METRICS}
    # COCOeval's -1: no labels of that size in the validation set
    metrics.update({k: float(evaluation[k]) if evaluation[k] >= 0 else math.nan for k in SIZE_METRICS})
    return PairRun(variant.name, seed, folder, metrics, per_class, float(summary["wall_s"]))


def run_job(job: PairJob, device: str) -> PairRun:
    """:func:`run_pair` on ``device`` (the executor's worker's; the one of ``--device`` in this process)."""
    train = dataclasses.replace(job.config.train, device=device)
    return run_pair(job.variant, job.seed, job.save_dir, dataclasses.replace(job.config, train=train))


def failed_pair(variant: str, seed: int, folder: Path, why: str) -> PairRun:
    """A pair that failed, logged: it enters no difference and ``--resume`` trains it again."""
    LOGGER.error(f"ablate: {variant} seed {seed} FAILED ({why}); it enters no Δ, --resume trains it again")
    return PairRun(variant, seed, folder, None, error=why)


def lost_job(job: PairJob, why: str) -> PairRun:
    """The failed run of a pair whose worker process died."""
    return failed_pair(job.variant.name, job.seed, job.save_dir / job.variant.name / f"seed{job.seed}", why)


def run_finished(checkpoint: dict[str, Any]) -> bool:
    return int(checkpoint["epoch"]) + 1 >= int((checkpoint.get("train_args") or {}).get("epochs", 0))


def finished_run_summary(folder: Path, wall_s: float) -> dict[str, Any]:
    """The train summary of a finished run, read back from its ``results.csv``."""
    metrics, epochs = results.final_metrics(folder / results.RESULTS_CSV)
    return {
        **metrics, "epochs": epochs, "wall_s": wall_s,
        "best": str(folder / "weights" / "best.pt"), "last": str(folder / "weights" / "last.pt"),
    }


def base_text(name: str) -> str:
    """The base YAML's text with the scale its name picks written in (:func:`~yolo_attn.nn.yaml_edit.pin_scale`),
    so every variant file builds at that scale whatever it is called."""
    return pin_scale(model_yaml_path(name).read_text(encoding="utf-8"), name)


def final_weights(run: PairRun) -> Path:
    return run.folder / "weights" / "last.pt"


def measure_costs(runs: dict[str, list[PairRun]], img_size: int, device: str) -> tuple[dict[str, VariantCost], str]:
    """Parameters and GFLOPs of every variant with a finished run, and the latency of their fused models measured
    together (interleaved, :func:`~yolo_attn.engine.latency.interleaved_latency`) on the CPU and, when training ran
    on CUDA, on the GPU; with a sentence saying how."""
    counts, fused = {}, {}
    for name, pair_runs in runs.items():
        done = next((r for r in pair_runs if r.ok), None)
        if done is not None:
            model = load_model(final_weights(done)).model
            counts[name] = (count_params(model), round(count_gflops(model, img_size), 3))
            fused[name] = model.fuse()
    if not fused:
        return {}, ""
    threads = torch.get_num_threads()
    image = torch.zeros(1, 3, img_size, img_size)
    cpu = interleaved_latency(fused, image, threads=threads)
    gpu, where = {}, f"{threads} torch CPU thread{'s' * (threads > 1)}"
    if select_device(device).type == "cuda":
        gpu = interleaved_latency({n: m.cuda() for n, m in fused.items()}, image.cuda())
        where += f" and {torch.cuda.get_device_name()}"
    note = (f"Cost: parameters and GFLOPs as yolo-attn info counts them (attention matmuls included) at {img_size} "
            f"px; latency of the fused models, all {len(fused)} in turn (A B C A B C ...) on the same input of "
            f"{img_size}x{img_size} after {WARMUP} warm-up rounds, median and 90th percentile of {RUNS} runs each, on "
            f"{where}, measured together after training.")
    costs = {n: VariantCost(*counts[n], cpu[n], gpu.get(n)) for n in fused}
    return costs, note


def image_maps_of(counts: np.ndarray) -> Callable[[PairRun], np.ndarray]:
    """``run -> its mAP50-95 on every resample of counts``, computed once per run; every run must have been
    validated on the same images."""
    cache: dict[Path, np.ndarray] = {}
    first: list[tuple[ImageStats, str]] = []

    def image_maps(run: PairRun) -> np.ndarray:
        if run.folder not in cache:
            stats = ImageStats.load(run.folder / IMAGES_FILE)
            if first:
                check_same_images(first[0][0], stats, (first[0][1], f"{run.variant} seed {run.seed}"))
            else:
                first.append((stats, f"{run.variant} seed {run.seed}"))
            cache[run.folder] = stats.bootstrap_maps(counts)
        return cache[run.folder]

    return image_maps


def validation_images(runs: dict[str, list[PairRun]]) -> int:
    done = next((r for pair_runs in runs.values() for r in pair_runs if r.ok), None)
    return 0 if done is None else len(ImageStats.load(done.folder / IMAGES_FILE).images)


def build_result(variants: Sequence[Variant], runs: dict[str, list[PairRun]], config: AblationConfig,
                 notes: list[str], img_size: int) -> AblationResult:
    """Summaries, costs, comparisons (bootstrap, Holm, power) and verdicts of the finished ablation."""
    costs, cost_note = measure_costs(runs, img_size, config.train.device)
    summaries = [summarize(v, costs.get(v.name), runs[v.name]) for v in variants]
    images = validation_images(runs)
    by_name = {s.name: s for s in summaries}
    if images:
        image_maps = image_maps_of(resample_counts(images, config.bootstrap, BOOTSTRAP_SEED))
        comparisons = [compare(by_name[v.name], by_name[r.name], image_maps) for v, r in planned_pairs(variants)]
    else:  # nothing finished
        comparisons = [Comparison(v.name, r.name, (), None) for v, r in planned_pairs(variants)]
    result = AblationResult(summaries, comparisons, config.seeds, images, config.bootstrap, notes, cost_note)
    comparisons = with_verdicts(adjust(comparisons), summaries, result.too_small)
    return dataclasses.replace(result, comparisons=comparisons)


def plan(config: AblationConfig) -> tuple[list[Variant], list[str]]:
    """The variants to train (with the controls when asked) and notes on the controls."""
    text = base_text(config.base)
    blocks = [resolve_block_name(b.strip()) for b in config.blocks if b.strip()]
    if not blocks:
        raise UserError("--blocks: name at least one block, e.g. --blocks CBAM,SE")
    after = list(config.after) if config.after is not None else None
    variants = plan_variants(text, blocks, after, config.replace, config.args, config.rewire_all)
    if not config.controls:
        return variants, []
    controls, notes = matched_controls(text, variants, config.rewire_all)
    scale, scale_note = next_scale(config.base, text)
    return [*variants, *controls, *([scale] if scale else [])], [*notes, scale_note]


def run_ablation(config: AblationConfig) -> tuple[AblationResult, Path]:
    """Train and evaluate every (variant, seed) pair (skipping finished ones on resume), measure every variant,
    compare and write the reports."""
    if not model_yaml_path(config.base).is_file():
        raise UserError(f"--base {config.base}: model YAML not found")
    if not config.seeds:
        raise UserError("--seeds: give at least one seed")
    if config.bootstrap < MIN_RESAMPLES:
        raise UserError(f"--bootstrap {config.bootstrap}: use at least {MIN_RESAMPLES} resamples")
    target = Path(config.project) / config.name
    if config.resume and not target.is_dir():
        raise UserError(f"--resume: {target} does not exist")
    variants, notes = plan(config)
    save_dir = target if config.resume else increment_path(target, config.exist_ok)
    save_dir.mkdir(parents=True, exist_ok=True)
    if config.train.data is None:  # the demo set: written here once, not by several workers at once
        generate_demo_dataset()
    jobs = [PairJob(v, seed, save_dir, config) for v in variants for seed in config.seeds]
    executor = make_executor(config.executor, config.jobs, config.train.device, config.ray_address, save_dir)
    try:
        finished = executor.run_all(run_job, jobs, lost_job)
    except KeyboardInterrupt:
        raise TrainingInterrupted(f"interrupted; continue the ablation with the same command and --resume "
                                  f"(it picks up {save_dir})") from None
    runs = {v.name: [r for r in finished if r.variant == v.name] for v in variants}
    done = [r for pair_runs in runs.values() for r in pair_runs if r.ok]  # the base's first
    img_size = int(yaml.safe_load((done[0].folder / "opt.yaml").read_text())["img"]) if done else 0
    result = build_result(variants, runs, config, notes, img_size)
    write_reports(result, save_dir)
    if config.cam and done:
        from yolo_attn.engine.cam import ablation_cam_figure  # linked from ablation.md, inline in ablation.html

        shown = [(name, next(r for r in pair_runs if r.ok)) for name, pair_runs in runs.items()
                 if any(r.ok for r in pair_runs)]
        ablation_cam_figure(save_dir, [name for name, _ in shown], [final_weights(r) for _, r in shown], config.cam,
                            config.train.device, first_run=done[0].folder)
        write_html(result, save_dir)
    return result, save_dir
