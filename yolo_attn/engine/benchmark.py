"""``yolo-attn benchmark``: a checkpoint's speed and accuracy in each format, read against the machine's own limit
(as Ultralytics' ``yolo benchmark`` reports ms/img and mAP per export format).

Per format (``torch``: the checkpoint as ``val`` loads it, fused; ``onnx``: exported with a dynamic batch and size
into the run folder by :func:`~yolo_attn.engine.exporter.export_onnx` and run by onnxruntime,
:class:`~yolo_attn.engine.onnx_model.OnnxDetector`): the file size, mAP50-95 and mAP50 from the validator (the same
rectangular batches, NMS and statistics for every format), and ms per image at batch 1 and at the validation batch
(:func:`~yolo_attn.engine.latency.interleaved_latency`: every format in turn on the same square input after a
warm-up, median and 90th percentile). Beside them: the machine's fp32 GEMM rate
(:func:`~yolo_attn.engine.latency.gemm_rate`, on the same threads) and the model's GFLOPs per image as
``yolo-attn info`` counts them, whence the GEMM fraction = GFLOPs x images per second / GEMM rate.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from yolo_attn.checkpoint import load_model
from yolo_attn.engine.exporter import export_onnx, image_shape, require
from yolo_attn.engine.latency import GEMM_SIZE, RUNS, WARMUP, Latency, gemm_rate, interleaved_latency
from yolo_attn.engine.onnx_model import OnnxDetector
from yolo_attn.engine.options import NON_NEGATIVE, POSITIVE, check_options, option
from yolo_attn.engine.validator import EvalConfig, build_eval_loader, evaluate, inference_state, resolve_split
from yolo_attn.errors import UserError
from yolo_attn.nn.flops import count_gflops
from yolo_attn.nn.model import DetectionModel, max_stride, model_device
from yolo_attn.utils.device import DEFAULT_DEVICE

LOGGER = logging.getLogger(__name__)

FORMATS = ("torch", "onnx")
CSV_NAME = "benchmark.csv"
ROW_KEYS = ("format", "status", "size_mb", "map50_95", "map50", "batch", "ms_per_img", "p90_ms_per_img", "img_per_s",
            "gemm_fraction")
HEADER = ("Format", "Status", "Size (MB)", "mAP50-95", "mAP50", "Batch", "ms/img", "p90 ms/img", "img/s", "GEMM frac")
ROW_FORMAT = "%-8s%-8s" + "%11s" * 8


@dataclass(frozen=True)
class BenchmarkConfig:
    """What to benchmark and how. ``eval``: the validator's options (image size, validation batch, split,
    thresholds); its COCOeval and plots are off (the mAP is YOLOv5's statistics). ``runs`` timed forwards of every
    format at each batch size, after ``warmup``; the GEMM rate from a ``gemm_size`` square product as often."""

    weights: str | Path
    data: str | Path
    formats: str = option(",".join(FORMATS), "comma-separated formats: torch (the checkpoint, fused, as val runs it), "
                          "onnx (exported into the run folder, run by onnxruntime; pip install 'yolo-attn[export]')",
                          metavar="FORMAT[,FORMAT]")
    runs: int = option(RUNS, "timed forwards of every format at each batch size (and of the GEMM), after the "
                       "warm-up", bounds=POSITIVE)
    warmup: int = option(WARMUP, "untimed forwards before the timed ones", bounds=NON_NEGATIVE)
    gemm_size: int = option(GEMM_SIZE, "side of the square fp32 matrix product that measures the machine's GEMM "
                            "rate", bounds=POSITIVE)
    eval: EvalConfig = field(default_factory=lambda: EvalConfig(coco=False))
    device: str = DEFAULT_DEVICE


@dataclass(frozen=True)
class Speed:
    """One format's forward at one batch size; per image: the batch's time over its images."""

    batch: int
    latency: Latency

    @property
    def ms_per_img(self) -> float:
        return self.latency.median_ms / self.batch

    @property
    def p90_ms_per_img(self) -> float:
        return self.latency.p90_ms / self.batch

    @property
    def img_per_s(self) -> float:
        return 1e3 / self.ms_per_img


@dataclass
class FormatResult:
    """One format: ``status`` is ``ok``, or ``failed: <why>`` (its figures then None, the other formats still run)."""

    format: str
    status: str = "ok"
    size_mb: float | None = None
    map50_95: float | None = None
    map50: float | None = None
    speeds: list[Speed] = field(default_factory=list)


@dataclass(frozen=True)
class BenchmarkResult:
    """Every format's figures, the machine's GEMM rate (GFLOP/s) and the model's GFLOPs per image at ``img_size``."""

    formats: list[FormatResult]
    model_gflops: float
    img_size: int
    gemm_gflops_per_s: float
    gemm_size: int
    threads: int
    save_dir: Path

    def gemm_fraction(self, speed: Speed) -> float:
        """The share of the GEMM rate the model's forward reaches: GFLOPs x images per second / GEMM rate."""
        return self.model_gflops * speed.img_per_s / self.gemm_gflops_per_s

    def rows(self) -> list[dict[str, Any]]:
        """One row per format and batch size (one row for a failed format), keys :data:`ROW_KEYS`."""
        rows = []
        for result in self.formats:
            common = {"format": result.format, "status": result.status, "size_mb": result.size_mb,
                      "map50_95": result.map50_95, "map50": result.map50}
            rows += [{**common, "batch": s.batch, "ms_per_img": s.ms_per_img, "p90_ms_per_img": s.p90_ms_per_img,
                      "img_per_s": s.img_per_s, "gemm_fraction": self.gemm_fraction(s)} for s in result.speeds]
            if not result.speeds:
                rows.append({**common, **dict.fromkeys(ROW_KEYS[5:])})
        return rows

    def as_json(self) -> dict[str, Any]:
        """What ``yolo-attn benchmark --json`` prints."""
        return {"rows": self.rows(), "gemm_gflops_per_s": self.gemm_gflops_per_s, "gemm_size": self.gemm_size,
                "model_gflops": self.model_gflops, "img_size": self.img_size, "threads": self.threads,
                "save_dir": str(self.save_dir)}


def parse_formats(text: str) -> tuple[str, ...]:
    """``--formats torch,onnx`` as a tuple (in the order given, each once); anything else is a :class:`UserError`."""
    formats = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    if not formats or any(f not in FORMATS for f in formats):
        raise UserError(f"--formats {text!r}: give one or more of {', '.join(FORMATS)}, comma-separated")
    return formats


def _runner(fmt: str, config: BenchmarkConfig, model: DetectionModel, shape: tuple[int, int], save_dir: Path,
            threads: int) -> tuple[nn.Module, Path]:
    """The module that runs ``fmt`` and its file: the loaded model and its checkpoint, or the exported graph."""
    if fmt == "torch":
        return model, Path(config.weights)
    path = save_dir / f"{Path(config.weights).stem}.onnx"
    export_onnx(load_model(config.weights).model, path, shape, dynamic=True)
    return OnnxDetector(path, model, threads, model_device(model)), path


def _accuracy(fmt: str, config: BenchmarkConfig, model: DetectionModel, shape: tuple[int, int], save_dir: Path,
              threads: int, loader: Any) -> tuple[FormatResult, nn.Module | None]:
    """Export (for onnx) and validate one format; a failure is the format's status, logged, not raised (bad input,
    a :class:`UserError` such as a model whose classes differ from the data's, stops the benchmark)."""
    try:
        runner, path = _runner(fmt, config, model, shape, save_dir, threads)
        metrics = evaluate(runner, config=_eval_config(config), dataloader=loader)
    except UserError:
        raise
    except Exception as e:  # an export or runtime failure is this format's result; the other formats still run
        LOGGER.warning(f"{fmt}: failed: {type(e).__name__}: {e}")
        return FormatResult(fmt, status=f"failed: {type(e).__name__}: {e}"), None
    LOGGER.info(f"{fmt}: {path} ({path.stat().st_size / 1e6:.1f} MB), mAP50-95 {metrics['map50_95']:.4f}, "
                f"mAP50 {metrics['map50']:.4f}")
    return FormatResult(fmt, size_mb=path.stat().st_size / 1e6, map50_95=metrics["map50_95"],
                        map50=metrics["map50"]), runner


def _eval_config(config: BenchmarkConfig) -> EvalConfig:
    """The validator's options for every format: the model stays where it is loaded; no COCOeval, plots or files."""
    return dataclasses.replace(config.eval, device=None, coco=False, plots=False, save_dir=None, save_json=False)


def _speeds(runners: dict[str, nn.Module], model: DetectionModel, config: BenchmarkConfig, shape: tuple[int, int],
            threads: int) -> dict[str, list[Speed]]:
    """Every runner's :class:`Speed` at batch 1 and at the validation batch, all runners in turn on the same
    random input; the torch model channels-last on the CPU, as the validator runs it."""
    device = model_device(model)
    speeds: dict[str, list[Speed]] = {name: [] for name in runners}
    with inference_state(model, half=False, channels_last=device.type == "cpu"):
        for batch in dict.fromkeys((1, config.eval.batch_size)):
            images = torch.rand(batch, 3, *shape, generator=torch.Generator().manual_seed(0)).to(device)
            LOGGER.info(f"timing {', '.join(runners)} at batch {batch}: {config.warmup} warm-up and {config.runs} "
                        f"timed forwards each, in turn")
            latencies = interleaved_latency(runners, images, config.runs, config.warmup, threads)
            for name, latency in latencies.items():
                speeds[name].append(Speed(batch, latency))
    return speeds


def run_benchmark(config: BenchmarkConfig, save_dir: str | Path) -> BenchmarkResult:
    """Benchmark ``config.weights`` in every format of ``config.formats`` on ``config.data``; the exported files and
    ``benchmark.csv`` (:func:`write_csv`) go into ``save_dir``."""
    formats = parse_formats(config.formats)
    check_options(config)
    check_options(config.eval)
    for module in ("onnx", "onnxruntime") if "onnx" in formats else ():
        require(module)  # refused before anything loads
    source = resolve_split(config.data, config.eval.split)
    model = load_model(config.weights, device=config.device, fuse=True).model
    shape = image_shape([config.eval.img_size], max_stride(model))
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    loader = build_eval_loader(source, max_stride(model), _eval_config(config))
    results, runners = [], {}
    for fmt in formats:
        result, runner = _accuracy(fmt, config, model, shape, save_dir, threads, loader)
        results.append(result)
        if runner is not None:
            runners[fmt] = runner
    for fmt, speeds in (_speeds(runners, model, config, shape, threads) if runners else {}).items():
        next(r for r in results if r.format == fmt).speeds = speeds
    device = model_device(model)
    LOGGER.info(f"GEMM rate: {config.gemm_size}x{config.gemm_size} fp32 torch.mm on {threads} threads")
    gemm, _ = gemm_rate(config.gemm_size, config.runs, config.warmup, threads, device)
    gflops = count_gflops(model, shape, int(model.yaml.get("ch", 3)))
    benchmark = BenchmarkResult(results, gflops, shape[0], gemm, config.gemm_size, threads, save_dir)
    write_csv(benchmark, save_dir / CSV_NAME)
    return benchmark


def write_csv(result: BenchmarkResult, path: Path) -> None:
    """The rows (:meth:`BenchmarkResult.rows`) with the GEMM rate and GFLOPs on each, as a CSV file."""
    extra = {"model_gflops": result.model_gflops, "img_size": result.img_size,
             "gemm_gflops_per_s": result.gemm_gflops_per_s, "threads": result.threads}
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*ROW_KEYS, *extra])
        writer.writeheader()
        for row in result.rows():
            writer.writerow({**row, **extra})


def _cell(value: Any, fmt: str) -> str:
    return "-" if value is None else fmt % value


def format_table(result: BenchmarkResult) -> str:
    """The benchmark as a text table (one line per format and batch size) under the GEMM rate and the GFLOPs."""
    lines = [
        f"machine: fp32 GEMM {result.gemm_size}x{result.gemm_size} on {result.threads} threads: "
        f"{result.gemm_gflops_per_s:.1f} GFLOP/s; model: {result.model_gflops:.3f} GFLOPs per image at "
        f"{result.img_size} px; GEMM frac = GFLOPs x img/s / GEMM rate",
        ROW_FORMAT % HEADER,
    ]
    for row in result.rows():
        status = row["status"] if row["status"] == "ok" else "failed"
        fraction = None if row["gemm_fraction"] is None else 100 * row["gemm_fraction"]
        cells = (_cell(row["size_mb"], "%.1f"), _cell(row["map50_95"], "%.4f"), _cell(row["map50"], "%.4f"),
                 _cell(row["batch"], "%d"), _cell(row["ms_per_img"], "%.2f"), _cell(row["p90_ms_per_img"], "%.2f"),
                 _cell(row["img_per_s"], "%.2f"), _cell(fraction, "%.1f%%"))
        lines.append(ROW_FORMAT % (row["format"], status, *cells))
    return "\n".join(lines)
