"""The block catalogue: every registered block with its aliases, YAML signature and paper, and for
attention blocks their parameters, GFLOPs and CPU latency on a reference feature map (``yolo-attn blocks``).

Attention blocks are built from their ``yaml_example`` line through the real builder, so the costs
are those of the block a user gets from that YAML line.
"""

from __future__ import annotations

import inspect
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
        cells = [f"`{r.name}`", aliases, f"`{r.signature}`", r.paper, params, gflops, cpu_ms]
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
