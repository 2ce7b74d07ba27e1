"""Benchmark every attention block at the P3/P4/P5 feature sizes of YOLOv5s at 640.

Each block is built from its ``yaml_example`` line (args adapted to the level's channels by its rule,
see ``yolo_attn.nn.catalog.build_example``) and measured on a (1, c, h, w) input: parameters,
GFLOPs (``yolo_attn.nn.summary.count_gflops``) and eval-mode CPU latency (fastest of ``--repeats``).

    python scripts/bench_blocks.py --out bench_blocks.md [--repeats 20] [--threads 2] [NAME ...]

The single-size (P4) costs in docs/blocks.md come from ``yolo-attn blocks --write-docs`` instead; the speed
figures and their commands are collected in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import torch

from yolo_attn.errors import UserError
from yolo_attn.nn.catalog import BlockCost, build_example, is_attention, measure, selected_specs

LEVELS = {"P3": (128, 80, 80), "P4": (256, 40, 40), "P5": (512, 20, 20)}  # yolov5s at 640


def level_cells(cost: BlockCost | None) -> list[str]:
    if cost is None:
        return ["error"] * 3
    return [f"{cost.params:,}", f"{cost.gflops:.4g}", f"{cost.cpu_ms:.2f}"]


def bench_table(names: list[str], repeats: int) -> str:
    """The markdown table; blocks that fail to build or run at a level get 'error' there (reason on stderr)."""
    header = ["Block"] + [f"{level} {what}" for level in LEVELS for what in ("params", "GFLOPs", "ms")]
    lines = ["| " + " | ".join(header) + " |", "| --- " + "| ---: " * (len(header) - 1) + "|"]
    for spec in selected_specs(names):
        if not is_attention(spec):
            continue
        cells = [f"`{spec.name}`"]
        for level, shape in LEVELS.items():
            try:
                cost = measure(build_example(spec, shape[0]), shape, repeats)
            except (UserError, ValueError, RuntimeError, TypeError) as e:
                print(f"{spec.name} at {level} {shape}: {e}", file=sys.stderr)
                cost = None
            cells += level_cells(cost)
        lines.append("| " + " | ".join(cells) + " |")
        print(lines[-1], file=sys.stderr, flush=True)  # progress
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help="only these blocks (default: all attention blocks)")
    parser.add_argument("--out", type=Path, help="also write the markdown table to this file")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per block and size (fastest counts)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    shapes = ", ".join(f"{level} {c}x{h}x{w}" for level, (c, h, w) in LEVELS.items())
    note = (
        f"Attention blocks at yolov5s/640 feature sizes ({shapes}); batch 1, CPU ({platform.processor() or 'cpu'}, "
        f"{torch.get_num_threads()} threads), fastest of {args.repeats} runs, torch {torch.__version__}."
    )
    table = bench_table(args.names, args.repeats)
    text = f"{note}\n\n{table}\n"
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
