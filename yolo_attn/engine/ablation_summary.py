"""The numbers of an ablation: each variant over its seeds, and each comparison of a variant with a reference.

Every attention variant is compared with the base and, with ``--controls``, with the matched control at its
position; each control with the base. A comparison uses only the seeds where both runs finished. Its Δ mAP50-95
gets three intervals (:mod:`~yolo_attn.engine.ablation_stats`): over seeds (training noise), over bootstrap
resamples of the validation images (the validation set as a sample) and one covering both; p-values are
Holm-adjusted over all comparisons of the ablation. A verdict calls a difference an improvement (or a loss) only
when the simultaneous interval (confidence 1 - alpha / m for m comparisons) excludes 0, and never in a run too
small to tell (fewer than :data:`MIN_SEEDS` seeds or :data:`MIN_IMAGES` validation images).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from yolo_attn.engine.ablation_stats import (
    ALPHA,
    Estimate,
    PairedDelta,
    combine,
    format_p,
    holm,
    mean_std,
    minimum_detectable_effect,
    paired_delta,
    seeds_needed,
)
from yolo_attn.engine.ablation_variants import ATTENTION, BASE, MATCHED, Variant
from yolo_attn.engine.latency import Latency

METRICS = ("precision", "recall", "map50", "map50_95")
SIZE_METRICS = ("APs", "APm", "APl", "AR100")  # COCOeval's, from the same run
MIN_SEEDS, MIN_IMAGES = 3, 50
CLASSES_SHOWN = 3


@dataclass(frozen=True)
class PairRun:
    """One (variant, seed) pair: its final validation metrics (:data:`METRICS` and :data:`SIZE_METRICS`), per-class
    ``(AP50-95, labels)`` and wall time, or ``error`` when it failed (then ``metrics`` is ``None``)."""

    variant: str
    seed: int
    folder: Path
    metrics: dict[str, float] | None
    per_class: dict[str, tuple[float, int]] = field(default_factory=dict)
    wall_s: float = float("nan")
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.metrics is not None

    def value(self, metric: str) -> float:
        """A metric of a finished run."""
        if self.metrics is None:
            raise ValueError(f"{self.variant} seed {self.seed} did not finish")
        return self.metrics[metric]


@dataclass(frozen=True)
class VariantCost:
    """What a variant costs: parameters and GFLOPs (as ``yolo-attn info`` counts them) at the training size, and
    the latency of its fused model (:func:`~yolo_attn.engine.latency.interleaved_latency`)."""

    params: int
    gflops: float
    cpu: Latency
    gpu: Latency | None = None


@dataclass(frozen=True)
class VariantSummary:
    """One variant: its cost (``None`` when no run finished), its runs, and each metric's ``(mean, std)`` over the
    finished runs (std ``None`` for one run; no entry for none)."""

    variant: Variant
    cost: VariantCost | None
    runs: tuple[PairRun, ...]
    metrics: dict[str, tuple[float, float | None]]
    wall_s: float

    @property
    def name(self) -> str:
        return self.variant.name

    @property
    def failed(self) -> list[int]:
        return [r.seed for r in self.runs if not r.ok]


def summarize(variant: Variant, cost: VariantCost | None, runs: Sequence[PairRun]) -> VariantSummary:
    """Mean ± std of every metric over the finished runs (a size metric COCOeval had no labels for is left out)."""
    ok = [r for r in runs if r.ok]
    metrics = {m: mean_std([r.value(m) for r in ok]) for m in (*METRICS, *SIZE_METRICS)
               if ok and all(math.isfinite(r.value(m)) for r in ok)}
    wall = float(np.mean([r.wall_s for r in ok])) if ok else float("nan")
    return VariantSummary(variant, cost, tuple(runs), metrics, wall)


@dataclass(frozen=True)
class Comparison:
    """``variant`` - ``reference`` on the seeds where both finished: Δ mAP50-95 (``estimate``; ``None`` without a
    common seed), its Holm-adjusted p and simultaneous interval, the power of the design (smallest detectable
    effect, seeds a Δ of the observed size needs; from the seed spread), paired Δ of the COCO size metrics and
    per-class AP, and the verdict in words."""

    variant: str
    reference: str
    seeds: tuple[int, ...]
    estimate: Estimate | None
    holm_p: float | None = None
    simultaneous: tuple[float, float] | None = None
    detectable: float | None = None
    seeds_needed: int | None = None
    size_deltas: dict[str, PairedDelta | None] = field(default_factory=dict)
    class_deltas: list[tuple[str, float, int]] = field(default_factory=list)  # (class, mean Δ AP50-95, labels)
    finding: str = ""
    verdict: str = ""

    def tested(self) -> tuple[Estimate, float, tuple[float, float]] | None:
        """(estimate, Holm p, simultaneous interval) once :func:`adjust` has run; ``None`` without a common seed."""
        if self.estimate is None or self.holm_p is None or self.simultaneous is None:
            return None
        return self.estimate, self.holm_p, self.simultaneous


@dataclass(frozen=True)
class AblationResult:
    """Everything the reports show. ``images``: validation images; ``resamples``: bootstrap resamples;
    ``notes``: how the controls were made (or why not); ``cost_note``: how cost was measured."""

    summaries: list[VariantSummary]
    comparisons: list[Comparison]
    seeds: tuple[int, ...]
    images: int
    resamples: int
    notes: list[str] = field(default_factory=list)
    cost_note: str = ""

    @property
    def too_small(self) -> bool:
        return len(self.seeds) < MIN_SEEDS or self.images < MIN_IMAGES

    @property
    def family(self) -> int:
        """The number of comparisons the Holm adjustment covers."""
        return sum(c.estimate is not None for c in self.comparisons)


def planned_pairs(variants: Sequence[Variant]) -> list[tuple[Variant, Variant]]:
    """(variant, reference): every attention variant against the base and its position's matched control; every
    control against the base."""
    base = next(v for v in variants if v.kind == BASE)
    matched = {v.placement: v for v in variants if v.kind == MATCHED}
    pairs = []
    for v in variants:
        if v.kind == BASE:
            continue
        pairs.append((v, base))
        if v.kind == ATTENTION and v.placement in matched:
            pairs.append((v, matched[v.placement]))
    return pairs


def compare(variant: VariantSummary, reference: VariantSummary,
            image_maps: Callable[[PairRun], np.ndarray]) -> Comparison:
    """The comparison of two variants on their common finished seeds; ``image_maps(run)``: that run's mAP50-95 on
    every bootstrap resample (the same resamples for every run)."""
    mine = {r.seed: r for r in variant.runs if r.ok}
    theirs = {r.seed: r for r in reference.runs if r.ok}
    seeds = tuple(sorted(set(mine) & set(theirs)))
    if not seeds:
        return Comparison(variant.name, reference.name, seeds, None)
    pairs = [(mine[s], theirs[s]) for s in seeds]
    differences = [a.value("map50_95") - b.value("map50_95") for a, b in pairs]
    image_differences = np.mean([image_maps(a) - image_maps(b) for a, b in pairs], axis=0)
    estimate = combine(differences, image_differences)
    detectable = needed = None
    spread = mean_std(differences)[1]
    if spread is not None:
        detectable = minimum_detectable_effect(spread, len(seeds))
        needed = seeds_needed(estimate.mean, spread)
    sizes = {m: paired_delta([a.value(m) for a, _ in pairs], [b.value(m) for _, b in pairs]) for m in SIZE_METRICS
             if all(math.isfinite(r.value(m)) for pair in pairs for r in pair)}
    return Comparison(variant.name, reference.name, seeds, estimate, detectable=detectable, seeds_needed=needed,
                      size_deltas=sizes, class_deltas=class_deltas(pairs))


def class_deltas(pairs: Sequence[tuple[PairRun, PairRun]]) -> list[tuple[str, float, int]]:
    """Mean paired Δ AP50-95 of every class both runs report, largest gain first, with the class's label count."""
    names = set.intersection(*(set(a.per_class) & set(b.per_class) for a, b in pairs))
    rows = []
    for name in names:
        delta = float(np.mean([a.per_class[name][0] - b.per_class[name][0] for a, b in pairs]))
        rows.append((name, delta, int(pairs[0][0].per_class[name][1])))
    return sorted(rows, key=lambda row: (-row[1], row[0]))


def adjust(comparisons: Sequence[Comparison], alpha: float = ALPHA) -> list[Comparison]:
    """Holm-adjusted p and the simultaneous (1 - alpha / m) interval of every comparison with an estimate."""
    estimates = [(i, c.estimate) for i, c in enumerate(comparisons) if c.estimate is not None]
    adjusted = holm([e.p_value for _, e in estimates])
    confidence = 1 - alpha / max(1, len(estimates))
    result = list(comparisons)
    for (i, e), p in zip(estimates, adjusted, strict=True):
        result[i] = replace(comparisons[i], holm_p=p, simultaneous=e.interval(confidence))
    return result


def describe(kind: str, name: str) -> str:
    return {BASE: "the base", MATCHED: f"the matched control ({name})"}.get(kind, name)


def finding(comparison: Comparison, too_small: bool, alpha: float = ALPHA) -> str:
    """What a comparison shows, in a few words: improves / worse only where the simultaneous interval excludes 0,
    and nothing in a run too small to tell or on fewer than :data:`MIN_SEEDS` common seeds."""
    tested = comparison.tested()
    if tested is None:
        return "no common seed"
    e, holm_p, (low, high) = tested
    if too_small or e.n < MIN_SEEDS:  # the run, or this comparison after failed pairs
        return "too small to tell"
    if low > 0 or high < 0:
        return "improves" if low > 0 else "worse"
    if holm_p < alpha:
        return "leans above" if e.mean > 0 else "leans below"
    return "no detectable effect"


def verdict(comparison: Comparison, variant: VariantSummary, reference: VariantSummary, too_small: bool) -> str:
    """One sentence: the finding, its numbers and the cost relative to the reference."""
    against = describe(reference.variant.kind, reference.name)
    tested = comparison.tested()
    if tested is None:
        return f"{variant.name}: no comparison with {against} (no seed where both runs finished)."
    (e, holm_p, (low, high)), short = tested, finding(comparison, too_small)
    phrase = {
        "improves": f"improves on {against}",
        "worse": f"is worse than {against}",
        "too small to tell": f"too small to tell against {against}",
        "no detectable effect": f"no detectable effect against {against}",
    }.get(short, f"{short} {against}, but its simultaneous interval [{low:+.3f}, {high:+.3f}] includes 0")
    numbers = f"Δ mAP50-95 {e.mean:+.3f} [{e.low:+.3f}, {e.high:+.3f}], Holm p {format_p(holm_p)}, n = {e.n}"
    return f"{variant.name}: {phrase} ({numbers}){cost_phrase(variant.cost, reference.cost)}."


def cost_phrase(cost: VariantCost | None, reference: VariantCost | None) -> str:
    if cost is None or reference is None:
        return ""
    params = (cost.params / reference.params - 1) * 100
    return f"; {params:+.1f} % parameters, {cost.cpu.median_ms - reference.cpu.median_ms:+.1f} ms (CPU median)"


def with_verdicts(comparisons: Sequence[Comparison], summaries: Sequence[VariantSummary],
                  too_small: bool) -> list[Comparison]:
    by_name = {s.name: s for s in summaries}
    return [replace(c, finding=finding(c, too_small), verdict=verdict(c, by_name[c.variant], by_name[c.reference],
                                                                      too_small)) for c in comparisons]
