"""The ablation's reports: ``ablation.md``, ``ablation.csv``, ``ablation.html`` (self-contained: figures inline as
base64 PNG, nothing fetched, nothing computed by the browser) and the figures of
:mod:`~yolo_attn.engine.ablation_figures`.

The Markdown and HTML reports render the same sections (:func:`sections`): a warning when the run is too small to
tell, the verdicts, the main figure, the variants with their cost, the Δ mAP50-95 table with its three intervals,
Holm p and power, the COCO size metrics, the classes that gain and lose most, how the controls were made and how
cost was measured, then the accuracy-cost figure.
"""

from __future__ import annotations

import base64
import csv
import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yolo_attn.engine.ablation_figures import plot_accuracy_vs_cost, plot_deltas
from yolo_attn.engine.ablation_stats import MAX_SEEDS, PairedDelta, format_p
from yolo_attn.engine.ablation_summary import (
    CLASSES_SHOWN,
    METRICS,
    MIN_IMAGES,
    MIN_SEEDS,
    SIZE_METRICS,
    AblationResult,
    Comparison,
    VariantSummary,
)
from yolo_attn.engine.ablation_variants import BASE
from yolo_attn.engine.latency import Latency

METRIC_HEADERS = ("P", "R", "mAP50", "mAP50-95")
DELTA_FIGURE, COST_FIGURE, CAM_FIGURE = "delta.png", "ablation.png", "cam.png"
CSV_FIELDS = (
    "row", "variant", "kind", "position", "reference", "seed", "n", "status", "params", "gflops", "cpu_ms",
    "cpu_p90_ms", "gpu_ms", "gpu_p90_ms",
    *(f"{m}{suffix}" for m in (*METRICS, *SIZE_METRICS) for suffix in ("", "_std")),
    "delta_map50_95", "seed_ci_low", "seed_ci_high", "image_ci_low", "image_ci_high", "ci_low", "ci_high", "p_value",
    "holm_p", "simultaneous_low", "simultaneous_high", "detectable_delta", "seeds_needed",
    *(f"delta_{m}" for m in SIZE_METRICS), "verdict", "wall_s", "error",
)


@dataclass(frozen=True)
class Section:
    """A titled part of the report: paragraphs, bullet points, a table (header and rows) and a figure file name."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    bullets: list[str] = field(default_factory=list)
    header: tuple[str, ...] = ()
    rows: list[list[str]] = field(default_factory=list)
    figure: str | None = None


def write_reports(result: AblationResult, save_dir: Path) -> None:
    """``ablation.csv``, ``ablation.md``, the two figures and ``ablation.html``."""
    write_csv(result, save_dir / "ablation.csv")
    plot_deltas(result, save_dir / DELTA_FIGURE)
    plot_accuracy_vs_cost(result, save_dir / COST_FIGURE)
    (save_dir / "ablation.md").write_text(markdown_report(result) + "\n", encoding="utf-8")
    write_html(result, save_dir)


# -- sections -----------------------------------------------------------------------------------------------------

def sections(result: AblationResult) -> list[Section]:
    return [overview(result), Section("Main figure", figure=DELTA_FIGURE), variants_section(result),
            deltas_section(result), sizes_section(result), classes_section(result), method_section(result),
            Section("Accuracy against cost", figure=COST_FIGURE)]


def warning(result: AblationResult) -> str | None:
    if not result.too_small:
        return None
    return (f"Too small to tell: {len(result.seeds)} seed(s) and {result.images} validation images (needs at least "
            f"{MIN_SEEDS} seeds and {MIN_IMAGES} images). No result below is marked significant.")


def overview(result: AblationResult) -> Section:
    n = len(result.seeds)
    facts = (f"n = {n} seed{'s' * (n > 1)} ({', '.join(map(str, result.seeds))}) per variant, "
             f"{result.images} validation images, {result.resamples:,} bootstrap resamples of those images (seeded). "
             f"{result.family} comparisons, Holm-adjusted as one family.")
    paragraphs = [p for p in (warning(result), facts) if p]
    return Section("Verdicts", paragraphs, [c.verdict for c in result.comparisons if c.verdict])


def latency_cell(latency: Latency | None) -> str:
    return "-" if latency is None else f"{latency.median_ms:.1f} ({latency.p90_ms:.1f})"


def mean_std_cell(value: tuple[float, float | None] | None) -> str:
    if value is None:
        return "-"
    mean, std = value
    return f"{mean:.3f}" if std is None else f"{mean:.3f} ± {std:.3f}"


def runs_cell(summary: VariantSummary) -> str:
    done = len(summary.runs) - len(summary.failed)
    failed = ", ".join(f"seed {s} FAILED" for s in summary.failed)
    return f"{done}/{len(summary.runs)}" + (f" ({failed})" if failed else "")


def variants_section(result: AblationResult) -> Section:
    header = ("variant", "kind", "position", "params", "GFLOPs", "CPU ms median (p90)", "GPU ms median (p90)",
              *METRIC_HEADERS, "runs", "wall s")
    rows = []
    for s in result.summaries:
        c = s.cost
        cost = [f"{c.params:,}", f"{c.gflops:.3f}", latency_cell(c.cpu), latency_cell(c.gpu)] if c else ["-"] * 4
        wall = "-" if math.isnan(s.wall_s) else f"{s.wall_s:.0f}"
        rows.append([s.name, s.variant.kind, s.variant.position, *cost,
                     *(mean_std_cell(s.metrics.get(m)) for m in METRICS), runs_cell(s), wall])
    note = ("Metrics: mean ± std over the finished seeds. A failed (variant, seed) pair is marked in runs and enters "
            "no Δ; --resume trains it again.")
    return Section("Variants", [note], header=header, rows=rows)


def interval_cell(low: float, high: float) -> str:
    return f"[{low:+.3f}, {high:+.3f}]"


def deltas_section(result: AblationResult) -> Section:
    header = ("variant", "against", "seeds", "Δ mAP50-95", "seeds 95 % CI", "images 95 % CI", "both 95 % CI", "p",
              "Holm p", f"simultaneous {100 - 5 / max(1, result.family):.2f} % CI", "detectable Δ", "seeds for Δ",
              "finding")
    rows = []
    for c in result.comparisons:
        tested = c.tested()
        if tested is None:
            rows.append([c.variant, c.reference, "0", *["-"] * 9, c.finding])
            continue
        e, holm_p, simultaneous = tested
        seeds = interval_cell(e.seeds.low, e.seeds.high) if e.seeds else "-"
        needed = "-" if c.detectable is None else (f"> {MAX_SEEDS}" if c.seeds_needed is None else str(c.seeds_needed))
        rows.append([c.variant, c.reference, str(e.n), f"{e.mean:+.4f}", seeds, interval_cell(*e.images),
                     interval_cell(e.low, e.high), format_p(e.p_value), format_p(holm_p), interval_cell(*simultaneous),
                     "-" if c.detectable is None else f"{c.detectable:.4f}", needed, c.finding])
    notes = [
        "Δ = variant − reference, paired: the same seeds (data order, augmentation) and the same validation images. "
        "seeds CI: t interval over seeds, the training noise (none from one seed). images CI: percentile interval "
        "of the seed-mean Δ over bootstrap resamples of the validation images, the validation set as a sample. "
        "both CI, p: the two sources together (variances added, Welch-Satterthwaite degrees of freedom; it can be "
        "narrower than the seeds' own interval, whose few degrees of freedom make it wide). Holm p: over the "
        f"{result.family} comparisons; simultaneous CI: the both-sources interval at 1 − 0.05/{result.family}. "
        "A finding says improves or worse only where the simultaneous interval excludes 0.",
        "Power, from the seed-to-seed spread of Δ: detectable Δ is the smallest effect this many seeds detect with "
        "80 % power at α 0.05 (two-sided paired t-test, before the multiplicity adjustment); seeds for Δ: how many "
        "seeds a Δ of the observed size would need.",
    ]
    return Section("Δ mAP50-95", notes, header=header, rows=rows)


def delta_cell(delta: PairedDelta | None) -> str:
    return "-" if delta is None else f"{delta.mean:+.3f} {interval_cell(delta.low, delta.high)}"


def sizes_section(result: AblationResult) -> Section:
    by_name = {s.name: s for s in result.summaries}
    header = ("variant", *(h for m in SIZE_METRICS for h in (m, f"Δ {m} [95 % CI]")))
    rows = []
    for c in result.comparisons:
        if by_name[c.reference].variant.kind != BASE:
            continue
        metrics = by_name[c.variant].metrics
        rows.append([c.variant, *(cell for m in SIZE_METRICS
                                  for cell in (mean_std_cell(metrics.get(m)), delta_cell(c.size_deltas.get(m))))])
    note = ("COCOeval of each run's final weights (small < 32², medium < 96², large objects; AR100: recall with 100 "
            "detections per image); Δ against the base, paired by seed, 95 % t interval over seeds (none below two).")
    return Section("Per object size", [note], header=header, rows=rows)


def classes_section(result: AblationResult) -> Section:
    header = ("variant", "against", f"largest gains (up to {CLASSES_SHOWN})", f"largest losses (up to {CLASSES_SHOWN})")
    rows = []
    for c in result.comparisons:
        gains = [row for row in c.class_deltas if row[1] > 0][:CLASSES_SHOWN]
        losses = sorted((row for row in c.class_deltas if row[1] < 0), key=lambda row: row[1])[:CLASSES_SHOWN]
        rows.append([c.variant, c.reference, classes_cell(gains), classes_cell(losses)])
    note = "Per-class AP50-95, Δ = variant − reference averaged over the common seeds; n: the class's labels."
    return Section("Per class", [note], header=header, rows=rows)


def classes_cell(rows: list[tuple[str, float, int]]) -> str:
    return "; ".join(f"{name} {delta:+.3f} (n {n})" for name, delta, n in rows) or "-"


def method_section(result: AblationResult) -> Section:
    notes = [s.variant.note for s in result.summaries if s.variant.note]
    return Section("Controls and cost", bullets=[*notes, *result.notes, result.cost_note])


# -- Markdown -----------------------------------------------------------------------------------------------------

def md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_report(result: AblationResult) -> str:
    lines: list[str] = []
    for section in sections(result):
        lines += [f"## {section.title}", ""]
        for paragraph in section.paragraphs:
            lines += [f"> **{paragraph}**" if paragraph == warning(result) else paragraph, ""]
        if section.bullets:
            lines += [*(f"- {b}" for b in section.bullets), ""]
        if section.header:
            lines.append("| " + " | ".join(section.header) + " |")
            lines.append("|" + "---|" * len(section.header))
            lines += ["| " + " | ".join(md_cell(cell) for cell in row) + " |" for row in section.rows]
            lines.append("")
        if section.figure:
            lines += [f"![{section.title}]({section.figure})", ""]
    return "\n".join(lines).rstrip()


# -- HTML ---------------------------------------------------------------------------------------------------------

STYLE = """body{font-family:sans-serif;margin:2em;max-width:1400px;color:#222}
table{border-collapse:collapse;font-size:13px;margin:0.5em 0}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}
td:first-child,th:first-child{text-align:left}th{background:#f2f2f2}img{max-width:100%}
.warning{background:#fde8e8;border:2px solid #c0392b;padding:0.6em;font-weight:bold}p.note{font-size:13px;color:#555}"""


def inline_png(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def html_section(section: Section, save_dir: Path, warning_text: str | None) -> list[str]:
    parts = [f"<h2>{html.escape(section.title)}</h2>"]
    for paragraph in section.paragraphs:
        kind = "warning" if paragraph == warning_text else "note"
        parts.append(f'<p class="{kind}">{html.escape(paragraph)}</p>')
    if section.bullets:
        parts.append("<ul>" + "".join(f"<li>{html.escape(b)}</li>" for b in section.bullets) + "</ul>")
    if section.header:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in section.header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in section.rows)
        parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    if section.figure and (save_dir / section.figure).is_file():
        parts.append(inline_png(save_dir / section.figure))
    return parts


def write_html(result: AblationResult, save_dir: Path) -> Path:
    """``ablation.html``: every section, figures inline; ``cam.png`` too when it exists (``--cam``)."""
    all_sections = sections(result)
    if (save_dir / CAM_FIGURE).is_file():
        all_sections.append(Section("Where the variants look (Grad-CAM)", figure=CAM_FIGURE))
    body = [part for s in all_sections for part in html_section(s, save_dir, warning(result))]
    page = ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>yolo-attn ablation</title>"
            f"<style>{STYLE}</style></head><body>\n<h1>Ablation: {html.escape(save_dir.name)}</h1>\n"
            + "\n".join(body) + "\n</body></html>\n")
    path = save_dir / "ablation.html"
    path.write_text(page, encoding="utf-8")
    return path


# -- CSV ----------------------------------------------------------------------------------------------------------

def cost_fields(summary: VariantSummary) -> dict[str, Any]:
    c = summary.cost
    if c is None:
        return {}
    gpu = {"gpu_ms": c.gpu.median_ms, "gpu_p90_ms": c.gpu.p90_ms} if c.gpu else {}
    return {"params": c.params, "gflops": c.gflops, "cpu_ms": c.cpu.median_ms, "cpu_p90_ms": c.cpu.p90_ms, **gpu}


def comparison_fields(c: Comparison) -> dict[str, Any]:
    tested = c.tested()
    if tested is None:
        return {"n": 0}
    e, holm_p, simultaneous = tested
    fields = {"n": e.n, "delta_map50_95": e.mean, "image_ci_low": e.images[0], "image_ci_high": e.images[1],
              "ci_low": e.low, "ci_high": e.high, "p_value": e.p_value, "holm_p": holm_p,
              "simultaneous_low": simultaneous[0], "simultaneous_high": simultaneous[1],
              "detectable_delta": c.detectable, "seeds_needed": c.seeds_needed,
              **{f"delta_{m}": d.mean for m, d in c.size_deltas.items() if d is not None}}
    if e.seeds is not None:
        fields.update(seed_ci_low=e.seeds.low, seed_ci_high=e.seeds.high)
    return fields


def write_csv(result: AblationResult, path: Path) -> None:
    """Rows per (variant, seed) with their status, one summary row per variant, one row per comparison."""
    rows: list[dict[str, Any]] = []
    base = {r.seed: r for r in result.summaries[0].runs if r.ok}
    for s in result.summaries:
        common = {"variant": s.name, "kind": s.variant.kind, "position": s.variant.position, **cost_fields(s)}
        for r in s.runs:
            row = {"row": "run", **common, "seed": r.seed, "n": 1, "status": "ok" if r.ok else "failed",
                   "wall_s": r.wall_s, "error": r.error}
            if r.metrics is not None:
                row.update({k: v for k, v in r.metrics.items() if math.isfinite(v)})  # NaN: COCOeval had no labels
                if r.seed in base:
                    row["delta_map50_95"] = r.value("map50_95") - base[r.seed].value("map50_95")
            rows.append(row)
        rows.append({"row": "summary", **common, "n": len(s.runs) - len(s.failed), "wall_s": s.wall_s,
                     **{m: v[0] for m, v in s.metrics.items()}, **{f"{m}_std": v[1] for m, v in s.metrics.items()}})
    for c in result.comparisons:
        rows.append({"row": "comparison", "variant": c.variant, "reference": c.reference, **comparison_fields(c),
                     "verdict": c.verdict})
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
