"""``yolo-attn blocks``: the registered blocks with their YAML signatures, papers and costs; ``--write-docs``
regenerates ``docs/blocks.md``; ``--check`` prints ``check-block``'s report card of each attention or plugin block."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

import torch

from yolo_attn.commands.common import add_json_argument, bounded, print_json
from yolo_attn.engine.options import NON_NEGATIVE, POSITIVE
from yolo_attn.errors import UserError
from yolo_attn.nn.catalog import (
    BlockRow,
    block_row,
    default_docs_path,
    docs_rows,
    markdown_table,
    selected_specs,
    update_readme,
    write_docs,
)


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="*", metavar="NAME", help="only these blocks (names or aliases)")
    add_json_argument(p, '{"blocks": [one object per block]} instead of the table')
    p.add_argument("--no-cost", action="store_true", help="skip building and timing the attention blocks")
    p.add_argument("--repeats", type=bounded(int, NON_NEGATIVE), default=10,
                   help="timed forward passes per block (fastest counts; 0: no timing)")
    p.add_argument("--threads", type=bounded(int, POSITIVE), default=None, metavar="N",
                   help="torch CPU threads for the timing (default: torch's choice; 1 with --write-docs)")
    p.add_argument("--write-docs", nargs="?", const="", default=None, metavar="PATH",
                   help="regenerate the blocks page, docs/blocks.md of this checkout (or PATH): costs recomputed, "
                   "CPU times kept for blocks whose parameters and GFLOPs are unchanged")
    p.add_argument("--remeasure", action="store_true", help="with --write-docs: time every attention block again")
    p.add_argument("--readme", metavar="PATH", help="also write the table into PATH between the blocks markers")
    p.add_argument("--check", action="store_true", help="the check-block report card of every attention block and "
                   "plugin block (or the named ones); exit code 1 when a check fails")


def run(args: argparse.Namespace) -> int:
    if args.check:
        return _check(args)
    threads = args.threads or (1 if args.write_docs is not None else None)
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        rows = _rows(args)
    finally:
        torch.set_num_threads(previous_threads)  # a caller in the same process (tests) keeps its threads
    table = markdown_table(rows)
    if args.readme:
        update_readme(Path(args.readme), table)
    if args.json:
        print_json({"blocks": [asdict(r) for r in rows]})
    elif args.write_docs is None:
        print(table)
    return 0


def _rows(args: argparse.Namespace) -> list[BlockRow]:
    specs = selected_specs(args.names)
    if args.write_docs is None:
        return [block_row(spec, cost=not args.no_cost, repeats=args.repeats) for spec in specs]
    if args.names and not args.write_docs:
        raise UserError("--write-docs with block names needs a PATH: docs/blocks.md lists every block")
    if args.no_cost:
        raise UserError("--write-docs measures the attention blocks; drop --no-cost (--repeats 0: no timing)")
    path = Path(args.write_docs) if args.write_docs else default_docs_path()
    previous = path.read_text(encoding="utf-8") if path.is_file() else None
    rows = docs_rows(specs, previous, args.repeats, args.remeasure)
    write_docs(path, rows, args.repeats, torch.get_num_threads())
    print(f"wrote {path}: {len(rows)} blocks")
    return rows


def _check(args: argparse.Namespace) -> int:
    from yolo_attn.engine.block_check import check_block, zoo_blocks  # the engine: training, export, ...

    cards = [check_block(spec.name, repeats=args.repeats) for spec in selected_specs(args.names or zoo_blocks())]
    for card in cards:
        print("\n".join(card.lines()))
    failed = [card.block for card in cards if not card.ok]
    print(f"{len(cards) - len(failed)} of {len(cards)} blocks pass every check"
          + (f"; failing: {', '.join(failed)}" if failed else ""))
    if args.json:
        print_json({"cards": [card.as_dict() for card in cards]})
    return 1 if failed else 0
