"""The ablation's results: per-variant statistics over seeds and the files ``ablation.csv``, ``ablation.md``
and ``ablation.png``.

Metrics are mean ± std over seeds. Δ mAP50-95 is paired by seed (variant - base trained with the same
seed, hence the same data order and augmentation) with a 95 % t interval and a paired t-test's p
(:mod:`~yolo_attn.engine.ablation_stats`). With one seed no interval exists and no Δ is shown.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path

from yolo_attn.engine.ablation_stats import PairedDelta, mean_std, paired_delta

METRICS = ("precision", "recall", "map50", "map50_95")
METRIC_HEADERS = ("P", "R", "mAP50", "mAP50-95")
CSV_FIELDS = ("row", "variant", "position", "seed", "n", "params", "gflops", "cpu_ms", "gpu_ms",
              *(f"{m}{suffix}" for m in METRICS for suffix in ("", "_std")),
              "delta_map50_95", "delta_ci_low", "delta_ci_high", "p_value", "wall_s")


@dataclass(frozen=True)
class RunResult:
    """One trained (variant, seed) pair: its final validation metrics and wall time."""

    variant: str
    seed: int
    precision: float
    recall: float
    map50: float
    map50_95: float
    wall_s: float


@dataclass(frozen=True)
class VariantCost:
    """What a variant costs: parameters, GFLOPs at the training size and forward latency."""

    params: int
    gflops: float
    cpu_ms: float
    gpu_ms: float | None


@dataclass(frozen=True)
class VariantSummary:
    """One row of the table: a variant's cost and its metrics over seeds (``(mean, std)``, std ``None`` for one
    seed) with the paired Δ mAP50-95 against the base (``None`` for the base itself or one seed)."""

    variant: str
    position: str
    cost: VariantCost
    runs: tuple[RunResult, ...]
    metrics: dict[str, tuple[float, float | None]]
    delta: PairedDelta | None
    wall_s: float  # mean per run


def summarize(variant: str, position: str, cost: VariantCost, runs: list[RunResult],
              base_runs: list[RunResult]) -> VariantSummary:
    """Mean ± std of each metric over ``runs`` and the paired Δ mAP50-95 against ``base_runs`` (same seeds)."""
    metrics = {m: mean_std([getattr(r, m) for r in runs]) for m in METRICS}
    delta = None
    if runs is not base_runs:
        delta = paired_delta([r.map50_95 for r in runs], [r.map50_95 for r in base_runs])
    wall = mean_std([r.wall_s for r in runs])[0]
    return VariantSummary(variant, position, cost, tuple(runs), metrics, delta, wall)


def write_reports(summaries: list[VariantSummary], seeds: tuple[int, ...], save_dir: Path) -> None:
    write_csv(summaries, save_dir / "ablation.csv")
    (save_dir / "ablation.md").write_text(markdown_report(summaries, seeds) + "\n", encoding="utf-8")
    plot_accuracy_vs_cost(summaries, len(seeds), save_dir / "ablation.png")


def write_csv(summaries: list[VariantSummary], path: Path) -> None:
    """One row per (variant, seed), then one summary row per variant (means, stds, Δ interval, p)."""
    rows, base = [], {r.seed: r for r in summaries[0].runs}
    for s in summaries:
        cost = asdict(s.cost)
        for r in s.runs:
            rows.append({"row": "run", "variant": s.variant, "position": s.position, "seed": r.seed, "n": 1, **cost,
                         **{m: getattr(r, m) for m in METRICS}, "wall_s": r.wall_s,
                         "delta_map50_95": r.map50_95 - base[r.seed].map50_95})
        summary = {"row": "summary", "variant": s.variant, "position": s.position, "n": len(s.runs), **cost,
                   **{m: s.metrics[m][0] for m in METRICS}, **{f"{m}_std": s.metrics[m][1] for m in METRICS},
                   "wall_s": round(s.wall_s, 2)}
        if s.delta is not None:
            summary.update(delta_map50_95=s.delta.mean, delta_ci_low=s.delta.low, delta_ci_high=s.delta.high,
                           p_value=s.delta.p_value)
        rows.append(summary)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def markdown_report(summaries: list[VariantSummary], seeds: tuple[int, ...]) -> str:
    """The table with a note stating n and the test used."""
    n = len(seeds)
    if n == 1:
        note = (f"n = 1 (seed {seeds[0]}): metrics of a single run. No confidence interval can be given from one "
                "seed, so no Δ is shown; rerun with `--seeds 3` (or more) to compare variants.")
    else:
        note = (f"n = {n} seeds ({', '.join(map(str, seeds))}) per variant; metrics are mean ± std over seeds. "
                "Δ mAP50-95 = variant − base, paired by seed (same data order and augmentation), mean with its "
                f"95 % confidence interval (t distribution, {n - 1} degree{'s' * (n > 2)} of freedom); "
                "p: two-sided paired t-test. **\\*** marks an interval that excludes 0.")
    header = ("| variant | position | params | GFLOPs | CPU ms | GPU ms | " + " | ".join(METRIC_HEADERS)
              + " | Δ mAP50-95 [95 % CI] | p | wall s |")
    lines = [note, "", header, "|---|---|" + "---:|" * (len(METRIC_HEADERS) + 7)]
    for s in summaries:
        c = s.cost
        gpu = f"{c.gpu_ms:.2f}" if c.gpu_ms is not None else "-"
        cells = [s.variant, s.position, f"{c.params:,}", f"{c.gflops:.3f}", f"{c.cpu_ms:.1f}", gpu,
                 *(format_mean_std(*s.metrics[m]) for m in METRICS), *format_delta(s.delta), f"{s.wall_s:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_mean_std(mean: float, std: float | None) -> str:
    return f"{mean:.3f}" if std is None else f"{mean:.3f} ± {std:.3f}"


def format_delta(delta: PairedDelta | None) -> tuple[str, str]:
    """(Δ with its interval, p); dashes for the base and for a single seed."""
    if delta is None:
        return "-", "-"
    mark = " **\\***" if delta.excludes_zero else ""
    return f"{delta.mean:+.3f} [{delta.low:+.3f}, {delta.high:+.3f}]{mark}", f"{delta.p_value:.3f}"


def plot_accuracy_vs_cost(summaries: list[VariantSummary], n: int, path: Path) -> None:
    """mAP50-95 (mean, error bar ±1 std over seeds) against GFLOPs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), tight_layout=True)
    for s in summaries:
        mean, std = s.metrics["map50_95"]
        ax.errorbar(s.cost.gflops, mean, yerr=std or 0.0, fmt="s" if s is summaries[0] else "o", capsize=4,
                    label=s.variant)
    ax.legend(fontsize=8)
    ax.set_xlabel("GFLOPs")
    ax.set_ylabel("mAP50-95")
    bars = f"mean ± 1 std over {n} seeds" if n > 1 else "one seed, no error bars"
    ax.set_title(f"attention blocks: accuracy vs cost ({bars})", fontsize=9)
    fig.savefig(path, dpi=150)
    plt.close(fig)
