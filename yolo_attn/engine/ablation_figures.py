"""The ablation's figures: ``delta.png`` (the answer: each variant's Δ mAP50-95 against the base and its matched
control, with intervals and a zero line) and ``ablation.png`` (accuracy against measured latency and parameters,
controls and next scale included)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from yolo_attn.engine.ablation_summary import AblationResult
from yolo_attn.engine.ablation_variants import ATTENTION, BASE, MATCHED, NEXT_SCALE

MARKERS = {BASE: "s", ATTENTION: "o", MATCHED: "D", NEXT_SCALE: "^"}
DPI = 120


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_deltas(result: AblationResult, path: Path) -> None:
    """One row per comparison: Δ mAP50-95 with its 95 % interval over seeds and images (dark) and its simultaneous
    interval over all comparisons (light); the base's comparisons in one colour, the matched control's in another."""
    plt = pyplot()
    rows = [(c, tested) for c in result.comparisons if (tested := c.tested()) is not None]
    kinds = {s.name: s.variant.kind for s in result.summaries}
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.45 * max(1, len(rows))), layout="constrained")
    for y, (c, (e, _, (low, high))) in enumerate(reversed(rows)):
        colour = "C0" if kinds[c.reference] == BASE else "C1"
        ax.plot([low, high], [y, y], color=colour, alpha=0.3, linewidth=7, solid_capstyle="butt")
        ax.errorbar(e.mean, y, xerr=[[e.mean - e.low], [e.high - e.mean]], fmt=MARKERS.get(kinds[c.variant], "o"),
                    color=colour, capsize=4)
    ax.axvline(0, color="black", linewidth=1)
    references = [plt.Line2D([], [], color=colour, marker="o", label=label)
                  for colour, label in (("C0", "against the base"), ("C1", "against the matched control"))]
    ax.legend(handles=references, fontsize=7, loc="best")
    ax.set_yticks(range(len(rows)), [f"{c.variant} − {c.reference}" for c, _ in reversed(rows)], fontsize=8)
    ax.set_xlabel("Δ mAP50-95")
    title = (f"Δ mAP50-95, {len(result.seeds)} seeds × {result.images} validation images\nbar: 95 % interval "
             f"(seeds and images); shade: simultaneous interval over the {result.family} comparisons")
    if result.too_small:
        title = "TOO SMALL TO TELL (fewer than 3 seeds or 50 images): nothing here is significant\n" + title
    ax.set_title(title, fontsize=8, color="firebrick" if result.too_small else "black")
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def plot_accuracy_vs_cost(result: AblationResult, path: Path) -> None:
    """mAP50-95 (mean, error bar ±1 std over seeds) against the CPU latency median (error bar to its p90) and
    against the parameter count; one colour and legend entry per variant, the marker saying its kind."""
    plt = pyplot()
    fig, (by_time, by_params) = plt.subplots(1, 2, figsize=(10, 4), sharey=True, layout="constrained")
    for i, s in enumerate(result.summaries):
        if s.cost is None or "map50_95" not in s.metrics:
            continue
        mean, std = s.metrics["map50_95"]
        style = {"fmt": MARKERS.get(s.variant.kind, "o"), "color": f"C{i}", "capsize": 3}
        latency = s.cost.cpu
        by_time.errorbar(latency.median_ms, mean, yerr=std or 0.0, xerr=[[0], [latency.p90_ms - latency.median_ms]],
                         **style)
        by_params.errorbar(s.cost.params / 1e6, mean, yerr=std or 0.0, label=s.name, **style)
    by_time.set_xlabel("CPU latency, ms (median; bar to p90)")
    by_params.set_xlabel("parameters, millions")
    by_time.set_ylabel("mAP50-95")
    by_params.legend(fontsize=7, loc="best")
    bars = f"mean ± 1 std over {len(result.seeds)} seeds" if len(result.seeds) > 1 else "one seed, no error bars"
    fig.suptitle(f"accuracy against cost ({bars}); ■ base, ● attention, ◆ matched control, ▲ next scale", fontsize=9)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
