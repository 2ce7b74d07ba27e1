"""``yolo-attn insert``: put a block into a model YAML after a given layer (or replace one), renumbering
every ``from`` index, and check that the result builds."""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

import yaml

from yolo_attn.commands.common import add_json_argument, print_json
from yolo_attn.errors import UserError
from yolo_attn.nn.builder import build_model, model_yaml_path
from yolo_attn.nn.summary import count_params
from yolo_attn.nn.yaml_edit import default_block_args, insert_block, readers_of, replace_block


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("cfg", help="model YAML to edit (it is not modified)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--after", type=int, metavar="IDX", help="insert the block after layer IDX")
    where.add_argument("--replace", type=int, metavar="IDX", help="replace layer IDX's module and args")
    p.add_argument("--block", required=True, help="registered block name, e.g. CBAM (see `yolo-attn blocks`)")
    p.add_argument("--args", default=None, help='YAML args of the block, e.g. "[256]" (parsed, never evaluated); '
                   "default: the block's example args fitted to the channels at that layer")
    p.add_argument("--rewire-all", action="store_true",
                   help="every layer reading layer IDX reads the new block (default: only the next layer's -1)")
    p.add_argument("-o", "--output", help="output YAML (default: <cfg stem>-<block>.yaml in the current directory)")
    p.add_argument("--dry-run", action="store_true", help="print the unified diff instead of writing")
    add_json_argument(p, "the output path and parameter counts")


def edited_text(text: str, args: argparse.Namespace) -> str:
    """The YAML text after the insertion or replacement that ``args`` asks for."""
    index = args.replace if args.replace is not None else args.after
    base_yaml = {**yaml.safe_load(text), "yaml_file": Path(args.cfg).name}
    block_args = args.args if args.args is not None else default_block_args(base_yaml, index, args.block)
    if args.replace is not None:
        return replace_block(text, args.replace, args.block, block_args)
    return insert_block(text, args.after, args.block, block_args, rewire_all=args.rewire_all)


def run(args: argparse.Namespace) -> int:
    cfg = model_yaml_path(args.cfg)
    if not cfg.is_file():
        raise UserError(f"model YAML not found: {cfg}")
    text = cfg.read_text(encoding="utf-8")
    try:
        new_text = edited_text(text, args)
    except UserError as e:
        raise UserError(f"{cfg}: {e}") from None
    output = Path(args.output) if args.output else Path(f"{cfg.stem}-{args.block}.yaml")
    if args.dry_run:
        sys.stdout.writelines(difflib.unified_diff(
            text.splitlines(keepends=True), new_text.splitlines(keepends=True), str(cfg), str(output)
        ))
        if args.json:
            print_json({"output": None, "dry_run": True})
        return 0
    if output.resolve() == cfg.resolve():
        raise UserError(f"-o {output}: refusing to overwrite the input YAML")
    base = count_params(build_model({**yaml.safe_load(text), "yaml_file": Path(args.cfg).name}))
    try:
        params = count_params(build_model({**yaml.safe_load(new_text), "yaml_file": output.name}))
    except UserError as e:
        raise UserError(f"the edited model does not build: {e}") from None
    output.write_text(new_text, encoding="utf-8")
    print(f"wrote {output}: {params:,} parameters ({params - base:+,} vs {cfg.name})")
    if args.after is not None and not readers_of(new_text, args.after + 1):
        print(f"note: no layer reads the inserted layer {args.after + 1}; its output is unused "
              f"(use --rewire-all, or insert where the next layer reads layer {args.after} through -1)")
    if args.json:
        print_json({"output": str(output), "params": params, "base_params": base, "dry_run": False})
    return 0
