"""``yolo-attn insert``: put a block into a model YAML after a given layer (or replace one), renumbering
every ``from`` index, and check that the result builds."""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

import yaml

from yolo_attn.commands.common import add_json_argument, bounded, print_json
from yolo_attn.engine.options import NON_NEGATIVE
from yolo_attn.errors import UserError
from yolo_attn.nn.builder import build_model, model_yaml_path
from yolo_attn.nn.summary import count_params
from yolo_attn.nn.yaml_edit import (
    default_block_args,
    insert_block,
    pin_scale,
    readers_of,
    replace_block,
    resolve_block_name,
)


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("cfg", help="model YAML to edit (it is not modified)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--after", type=bounded(int, NON_NEGATIVE), metavar="IDX",
                       help="insert the block after layer IDX")
    where.add_argument("--replace", type=bounded(int, NON_NEGATIVE), metavar="IDX",
                       help="replace layer IDX's module and args")
    p.add_argument("--block", required=True, help="registered block name, e.g. CBAM (see `yolo-attn blocks`)")
    p.add_argument("--args", default=None, help='YAML args of the block, e.g. "[256]" (parsed, never evaluated); '
                   "default: the block's example args fitted to the channels at that layer")
    add_rewire_argument(p)
    p.add_argument("-o", "--output", help="output YAML (default: <cfg name>-<block>.yaml in the current directory, "
                   "e.g. yolo11s-CBAM.yaml)")
    p.add_argument("--force", action="store_true", help="overwrite the output YAML if it exists")
    p.add_argument("--dry-run", action="store_true", help="print the unified diff instead of writing")
    add_json_argument(p, "the output path and parameter counts")


def add_rewire_argument(p: argparse.ArgumentParser) -> None:
    """``--rewire-all`` / ``--no-rewire-all``: who reads a block inserted after layer IDX (``insert`` and
    ``ablate``). The default is what every shipped config in configs/attention does: all of IDX's readers."""
    p.add_argument("--rewire-all", action=argparse.BooleanOptionalAction, default=True,
                   help="every layer that read layer IDX reads the new block (the default, as the configs in "
                   "configs/attention); --no-rewire-all: only the next layer's -1, the others keep reading IDX")


def edited_text(text: str, block: str, args: argparse.Namespace) -> str:
    """The YAML text after the insertion or replacement of ``block`` that ``args`` asks for."""
    index = args.replace if args.replace is not None else args.after
    base_yaml = {**yaml.safe_load(text), "yaml_file": Path(args.cfg).name}
    block_args = args.args if args.args is not None else default_block_args(base_yaml, index, block)
    if args.replace is not None:
        return replace_block(text, args.replace, block, block_args)
    return insert_block(text, args.after, block, block_args, rewire_all=args.rewire_all)


def run(args: argparse.Namespace) -> int:
    cfg = model_yaml_path(args.cfg)
    if not cfg.is_file():
        raise UserError(f"model YAML not found: {cfg}")
    text = pin_scale(cfg.read_text(encoding="utf-8"), args.cfg)  # yolo11s.yaml: yolo11.yaml at scale s
    try:
        block = resolve_block_name(args.block)
        new_text = edited_text(text, block, args)
    except UserError as e:
        raise UserError(f"{cfg}: {e}") from None
    output = Path(args.output) if args.output else Path(f"{Path(args.cfg).stem}-{block}.yaml")
    if args.dry_run:
        sys.stdout.writelines(difflib.unified_diff(
            text.splitlines(keepends=True), new_text.splitlines(keepends=True), str(cfg), str(output)
        ))
        if args.json:
            print_json({"output": None, "dry_run": True})
        return 0
    if output.resolve() == cfg.resolve():
        raise UserError(f"-o {output}: refusing to overwrite the input YAML")
    if output.exists() and not args.force:
        raise UserError(f"{output} exists; --force overwrites it, -o writes elsewhere")
    base = count_params(build_model({**yaml.safe_load(text), "yaml_file": Path(args.cfg).name}))
    try:
        params = count_params(build_model({**yaml.safe_load(new_text), "yaml_file": output.name}))
    except UserError as e:
        raise UserError(f"the edited model does not build: {e}") from None
    output.write_text(new_text, encoding="utf-8")
    print(f"wrote {output}: {params:,} parameters ({params - base:+,} vs {Path(args.cfg).name})")
    if args.after is not None and not readers_of(new_text, args.after + 1):
        print(f"note: no layer reads the inserted layer {args.after + 1}; its output is unused "
              f"(insert after a layer that another layer reads)")
    if args.json:
        print_json({"output": str(output), "params": params, "base_params": base, "dry_run": False})
    return 0
