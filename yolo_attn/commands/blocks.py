"""``yolo-attn blocks``: the registered blocks with their YAML signatures, papers and costs."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from yolo_attn.commands.common import add_json_argument, print_json
from yolo_attn.nn.catalog import block_row, markdown_table, selected_specs, update_readme


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="*", metavar="NAME", help="only these blocks (names or aliases)")
    add_json_argument(p, '{"blocks": [one object per block]} instead of the table')
    p.add_argument("--no-cost", action="store_true", help="skip building and timing the attention blocks")
    p.add_argument("--repeats", type=int, default=10, help="timed forward passes per block (fastest counts; 0: no timing)")
    p.add_argument("--readme", metavar="PATH", help="also write the table into PATH between the blocks markers")


def run(args: argparse.Namespace) -> int:
    rows = [block_row(spec, cost=not args.no_cost, repeats=args.repeats) for spec in selected_specs(args.names)]
    table = markdown_table(rows)
    if args.readme:
        update_readme(Path(args.readme), table)
    if args.json:
        print_json({"blocks": [asdict(r) for r in rows]})
    else:
        print(table)
    return 0
