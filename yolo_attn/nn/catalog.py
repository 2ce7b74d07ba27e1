"""The block catalogue: every registered block with its aliases, YAML signature and paper, and for
attention blocks their parameters, GFLOPs and CPU latency on a reference feature map (``yolo-attn blocks``).

Attention blocks are built from their ``yaml_example`` line through the real builder, so the costs
are those of the block a user gets from that YAML line.

``docs/blocks.md`` is this table as a page (:func:`docs_page`), regenerated with :data:`REGENERATE_DOCS`.
Its names, aliases, YAML args and papers are a function of the registry (a test keeps them in sync,
:func:`docs_drift`); the measured columns are not, so regenerating keeps the CPU time of every block whose
parameters and GFLOPs are unchanged and times only the others (:func:`docs_rows`).
"""

from __future__ import annotations

import inspect
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from yolo_attn.errors import UserError
from yolo_attn.nn.builder import parse_layers
from yolo_attn.nn.registry import BlockSpec, all_blocks, lookup
from yolo_attn.nn.summary import count_gflops, count_params
from yolo_attn.utils.torch_utils import forward_latency_ms

REFERENCE_SHAPE = (256, 40, 40)  # (channels, height, width): yolov5s P4 at 640
EXAMPLE_CHANNELS = 256  # every ``yaml_example`` is valid right after a layer with this many channels
README_START, README_END = "<!-- blocks:start -->", "<!-- blocks:end -->"
DOCS_PAGE = Path("docs") / "blocks.md"  # relative to the repository root
REGENERATE_DOCS = "yolo-attn blocks --write-docs"  # also: python -m yolo_attn blocks --write-docs
TEXT_COLUMNS = 4  # Block, Aliases, YAML args, Paper: what the registry alone determines


@dataclass(frozen=True)
class BlockCost:
    """What one block costs on one ``(1, c, h, w)`` input."""

    params: int
    gflops: float
    cpu_ms: float | None


@dataclass(frozen=True)
class BlockRow:
    """One line of the blocks table."""

    name: str
    aliases: list[str]
    signature: str
    paper: str
    attention: bool
    params: int | None = None
    gflops: float | None = None
    cpu_ms: float | None = None
    error: str | None = None


def is_attention(spec: BlockSpec) -> bool:
    return spec.cls.__module__.startswith("yolo_attn.nn.attention.")


def paper_line(cls: type) -> str:
    """The first paragraph of ``cls``'s docstring on one line, without its ``YAML: ...`` part."""
    doc = (inspect.getdoc(cls) or "").strip()
    paragraph = " ".join(line.strip() for line in doc.split("\n\n")[0].splitlines())
    return paragraph.split(" YAML:")[0].strip()


def build_example(spec: BlockSpec, channels: int = EXAMPLE_CHANNELS) -> nn.Module:
    """Build ``spec``'s ``yaml_example`` after a layer with ``channels`` outputs.

    The line is written for 256 input channels; for other widths its args go through the rule's
    ``args_for_channels`` (the width arg, if the rule has one, set to ``channels``).
    """
    example = getattr(spec.cls, "yaml_example", None)
    if not isinstance(example, str):
        raise UserError(f"{spec.name} has no yaml_example")
    entry = yaml.safe_load(example)
    if not isinstance(entry, list) or len(entry) != 4 or entry[0] != -1:
        raise UserError(f"{spec.name}.yaml_example {example!r} is not a layer line [-1, number, module, args]")
    if channels != EXAMPLE_CHANNELS:
        entry = [*entry[:3], spec.rule.args_for_channels(entry[3], channels)]
    layers, _, _ = parse_layers({"nc": 80, "backbone": [entry], "head": []}, channels)
    return layers[0]


def measure(module: nn.Module, shape: tuple[int, int, int], repeats: int = 10) -> BlockCost:
    """Parameters, GFLOPs (``count_gflops``) and eval-mode CPU latency in ms, the fastest of ``repeats`` runs
    (the run least disturbed by other load; ``repeats=0``: no timing)."""
    c, h, w = shape
    gflops = count_gflops(module, (h, w), c)
    cpu_ms = forward_latency_ms(module, torch.rand(1, c, h, w), repeats) if repeats > 0 else None
    return BlockCost(count_params(module), gflops, cpu_ms)


def block_row(spec: BlockSpec, cost: bool = True, repeats: int = 10) -> BlockRow:
    """The table row of ``spec``; attention blocks get their cost at :data:`REFERENCE_SHAPE` when ``cost``."""
    row = BlockRow(spec.name, list(spec.aliases), spec.rule.signature, paper_line(spec.cls), is_attention(spec))
    if not (cost and row.attention):
        return row
    try:
        measured = measure(build_example(spec, REFERENCE_SHAPE[0]), REFERENCE_SHAPE, repeats)
    except (UserError, ValueError, RuntimeError, TypeError) as e:
        return BlockRow(**{**asdict(row), "error": str(e)})
    return BlockRow(**{**asdict(row), **asdict(measured)})


def selected_specs(names: list[str]) -> list[BlockSpec]:
    """All blocks, or the named ones (names or aliases)."""
    if not names:
        return all_blocks()
    try:
        return [lookup(name) for name in names]
    except KeyError as e:
        raise UserError(e.args[0]) from None


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|")


def _markdown_roles(text: str) -> str:
    """Docstring cross-references (``:class:`~a.b.C` ``) as plain code spans (`` `C` ``) for markdown."""
    return re.sub(r":(?:class|func|meth|mod|data|attr):`~?([^`]+)`",
                  lambda m: f"`{m.group(1).rsplit('.', 1)[-1] if m.group(0).count('~') else m.group(1)}`", text)


def markdown_table(rows: list[BlockRow]) -> str:
    """The blocks table in GitHub markdown."""
    c, h, w = REFERENCE_SHAPE
    lines = [
        f"| Block | Aliases | YAML args | Paper | Params | GFLOPs @{c}x{h}x{w} | CPU ms @{c}x{h}x{w} |",
        "| --- | --- | --- | --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        params = f"{r.params:,}" if r.params is not None else ""
        gflops = f"{r.gflops:.4g}" if r.gflops is not None else ""
        cpu_ms = f"{r.cpu_ms:.2f}" if r.cpu_ms is not None else ("error" if r.error else "")
        aliases = ", ".join(f"`{a}`" for a in r.aliases)
        cells = [f"`{r.name}`", aliases, f"`{r.signature}`", _markdown_roles(r.paper), params, gflops, cpu_ms]
        lines.append("| " + " | ".join(_cell(x) for x in cells) + " |")
    return "\n".join(lines)


def update_readme(path: Path, table: str) -> None:
    """Replace the text between the blocks markers of ``path`` with ``table``."""
    text = path.read_text(encoding="utf-8")
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise UserError(f"{path}: no '{README_START}' ... '{README_END}' markers to write the table between")
    head = text[: start + len(README_START)]
    path.write_text(f"{head}\n{table}\n{text[end:]}", encoding="utf-8")


def default_docs_path() -> Path:
    """``docs/blocks.md`` of the source checkout this package runs from."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file():
        raise UserError(f"{root} is not a yolo-attn source checkout: give --write-docs the page's path")
    return root / DOCS_PAGE


def table_cells(text: str) -> dict[str, list[str]]:
    """The rows of the blocks table between the markers of ``text``: block name -> its cells as written."""
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise UserError(f"no '{README_START}' ... '{README_END}' markers around a blocks table")
    rows = {}
    for line in text[start + len(README_START) : end].strip().splitlines()[2:]:  # after the header and the rule
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        rows[cells[0].strip("`")] = cells
    return rows


def docs_drift(text: str, specs: list[BlockSpec]) -> list[str]:
    """The blocks whose name, aliases, YAML args or paper differ between the page ``text`` and ``specs``
    (missing, extra, reordered or changed rows); empty when the page is in sync. Costs are not compared."""
    written = table_cells(text)
    expected = table_cells(f"{README_START}\n{markdown_table([block_row(s, cost=False) for s in specs])}\n{README_END}")
    drift = [name for name, cells in expected.items() if written.get(name, [])[:TEXT_COLUMNS] != cells[:TEXT_COLUMNS]]
    drift += [f"{name} (not registered)" for name in written if name not in expected]
    if not drift and list(written) != list(expected):
        drift.append("(rows out of order)")
    return drift


def docs_rows(specs: list[BlockSpec], previous: str | None = None, repeats: int = 10,
              remeasure: bool = False) -> list[BlockRow]:
    """The rows of the docs page. Parameters and GFLOPs are computed; the CPU time of an attention block is
    taken from the ``previous`` page when its parameters and GFLOPs there are the same (so regenerating does not
    re-time, and churn, every block), and measured otherwise or with ``remeasure``."""
    old = table_cells(previous) if previous and README_START in previous else {}
    rows = []
    for spec in specs:
        row = block_row(spec, cost=True, repeats=0)
        if row.attention and row.error is None:
            cells = old.get(row.name)
            kept = (not remeasure and cells is not None and len(cells) == 7
                    and cells[4:6] == [f"{row.params:,}", f"{row.gflops:.4g}"])
            if kept and cells is not None and re.fullmatch(r"\d+(\.\d+)?", cells[6]):
                row = BlockRow(**{**asdict(row), "cpu_ms": float(cells[6])})
            elif repeats > 0:
                row = block_row(spec, cost=True, repeats=repeats)
        rows.append(row)
    return rows


def docs_page(table: str, repeats: int = 10, threads: int = 1) -> str:
    """``docs/blocks.md``: a fixed header saying how it was made and how to regenerate it, then ``table``."""
    c, h, w = REFERENCE_SHAPE
    thread_s = "one thread" if threads == 1 else f"{threads} threads"
    runs = f"the fastest of {repeats} runs" if repeats > 0 else "the fastest of several runs"
    return f"""# Blocks

<!-- Generated by `{REGENERATE_DOCS}` from the block registry; edit the blocks' docstrings, not this page. -->

Every registered block, with its aliases, its YAML arguments and the paper or source its docstring names.
Attention blocks (`yolo_attn/nn/attention/`) also get their parameters, GFLOPs and CPU latency on a
{c}x{h}x{w} feature map (yolov5s's P4 at 640 px), built from their `yaml_example` line through the real
builder: batch 1, {thread_s}, {runs} on a CPU (the published figures: the 2-core development
machine, shared with other work), so read the times as relative. Other blocks have no cost columns.

Regenerate this page after adding or changing a block (from the repository root):

```bash
{REGENERATE_DOCS}
```

It recomputes parameters and GFLOPs and times only the attention blocks that are new or whose parameters or
GFLOPs changed; `--remeasure` times them all again. `tests/commands/test_blocks.py` fails when the names,
aliases, YAML args or papers below differ from the registry (the measured columns are not checked).
Per-level costs (P3, P4 and P5 of yolov5s at 640): `python scripts/bench_blocks.py`. Writing a new block:
[adding-a-block.md](adding-a-block.md). Names Ultralytics uses that yolo-attn refuses on purpose (task heads,
RT-DETR, YOLO-World/YOLOE) are not blocks and are not listed: [models.md](models.md#refused-on-purpose).

{README_START}
{table}
{README_END}
"""


def write_docs(path: Path, rows: list[BlockRow], repeats: int = 10, threads: int = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(docs_page(markdown_table(rows), repeats, threads), encoding="utf-8")
