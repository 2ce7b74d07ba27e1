"""Edit a model YAML as text: insert a layer (renumbering every ``from`` index) or replace one.

Tutorials such as "YOLOv5改进 | 注意力机制 | 添加双重注意力机制 DoubleAttention" (YOLOv5 improved | attention |
adding DoubleAttention) add a block by hand and renumber ``from`` indices themselves (``[-1, 6]`` becomes
``[-1, 7]`` ...), which is where they go wrong. Here the YAML is composed once to learn where every
layer and every ``from`` number sits in the text, and only those characters change: comments,
spacing and the rest of the file stay as written.

Renumbering keeps the graph: the new layer reads the layer it follows (``from: -1``); the layer
right after it, if it read that layer through ``-1``, now reads the new layer; every other reference
(absolute indices, Detect/IDetect inputs, negative offsets that cross the insertion point) points at
the same layer as before. With ``rewire_all`` every reader of the preceding layer reads the new one.
Trailing comments that start with a layer's own index (``# 13``) follow the renumbering.
"""

from __future__ import annotations

import logging
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from yolo_attn.errors import UserError
from yolo_attn.nn.registry import all_blocks, lookup

LOGGER = logging.getLogger(__name__)
SECTIONS = ("backbone", "head")
INDEX_COMMENT = re.compile(r"\s*,?\s*#\s*(\d+)(?!\d)")  # a trailing comment that starts with a layer index


class YamlEditError(UserError, ValueError):
    """A model YAML that cannot be edited as asked; the message names the layer."""


@dataclass(frozen=True)
class Reference:
    """One number in a layer's ``from`` field and where it sits in the text."""

    value: int
    start: int
    end: int


@dataclass(frozen=True)
class LayerSpan:
    """One ``[from, number, module, args]`` entry: its global index, text span and ``from`` numbers."""

    index: int
    start: int
    end: int
    flow: bool  # inside a ``[[...], ...]`` flow list (else a ``- [...]`` block item)
    sources: tuple[Reference, ...]
    module: ScalarNode
    args: SequenceNode


def _compose(text: str) -> MappingNode:
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as e:
        raise YamlEditError(f"not valid YAML: {e}") from None
    if not isinstance(root, MappingNode):
        raise YamlEditError("expected a model YAML mapping with 'backbone' and 'head'")
    return root


def _int_scalar(node: Any, where: str) -> Reference:
    if not isinstance(node, ScalarNode) or not re.fullmatch(r"[-+]?\d+", node.value.strip()):
        raise YamlEditError(f"{where}: 'from' must be an int or a list of ints")
    return Reference(int(node.value), node.start_mark.index, node.end_mark.index)


def layer_spans(text: str) -> list[LayerSpan]:
    """Every layer of ``backbone + head`` with its position in ``text``."""
    sections = {key.value: value for key, value in _compose(text).value if isinstance(key, ScalarNode)}
    spans: list[LayerSpan] = []
    for name in SECTIONS:
        section = sections.get(name)
        if not isinstance(section, SequenceNode):
            raise YamlEditError(f"model YAML needs a '{name}' list of [from, number, module, args]")
        for entry in section.value:
            where = f"layer {len(spans)}"
            if not isinstance(entry, SequenceNode) or len(entry.value) != 4 or not entry.flow_style:
                raise YamlEditError(f"{where}: each layer must be a one-line list [from, number, module, args]")
            source, _, module, args = entry.value
            if isinstance(source, SequenceNode):
                sources = tuple(_int_scalar(x, where) for x in source.value)
            else:
                sources = (_int_scalar(source, where),)
            if not isinstance(module, ScalarNode) or not isinstance(args, SequenceNode):
                raise YamlEditError(f"{where}: expected [from, number, module, args]")
            start, end = entry.start_mark.index, entry.end_mark.index
            spans.append(LayerSpan(len(spans), start, end, bool(section.flow_style), sources, module, args))
    return spans


def _flow(value: Any) -> str:
    """One YAML flow value in the style of YOLO model YAMLs (``True``, ``None``, ``'nearest'``)."""
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if value is None or isinstance(value, (bool, int, float)):
        return str(value)
    if not isinstance(value, str):
        raise YamlEditError(f"block args may hold numbers, words and lists, not {value!r}")
    if value and not re.search(r"[\[\]{},#'\"]|^\s|\s$|^[-?:&*!|>%@`]", value) and yaml.safe_load(value) == value:
        return value
    return "'" + value.replace("'", "''") + "'"


def format_args(args: Any) -> str:
    """A YAML flow list for ``args`` (a list, or a YAML text of one, parsed with ``yaml.safe_load``)."""
    if isinstance(args, str):
        try:
            args = yaml.safe_load(args) if args.strip() else []
        except yaml.YAMLError as e:
            raise YamlEditError(f"--args {args!r} is not a YAML list: {e}") from None
    if args is None:
        args = []
    if not isinstance(args, list):
        raise YamlEditError(f"block args must be a list such as [256] or [], got {args!r}")
    return _flow(args)


def _check_block_name(block: str) -> None:
    try:
        lookup(block)
    except KeyError as e:
        raise YamlEditError(e.args[0]) from None


def resolve_block_name(block: str) -> str:
    """``block`` as registered: itself when registered, else the one registered name that matches it ignoring
    case (``cbam`` -> ``CBAM``, with a note), else the registry's error with its closest names."""
    try:
        lookup(block)
        return block
    except KeyError as e:
        unknown = YamlEditError(e.args[0])
    matches = {spec.name: key for spec in all_blocks() for key in (spec.name, *spec.aliases)
               if key.lower() == block.lower()}
    if len(matches) != 1:
        if matches:
            raise YamlEditError(f"block {block!r} matches {' and '.join(sorted(matches.values()))} ignoring case; "
                                "give its exact name")
        raise unknown
    (name,) = matches.values()
    LOGGER.info(f"note: block {block!r} read as {name!r} (names are case-sensitive)")
    return name


def _apply(text: str, edits: list[tuple[int, int, str]]) -> str:
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    return text


def _renumbered(layer: LayerSpan, ref: Reference, after: int, rewire_all: bool) -> int:
    """The new text value of ``ref`` once a layer is inserted at ``after + 1``."""
    new_index = layer.index + 1 if layer.index > after else layer.index
    source = ref.value if ref.value >= 0 else layer.index + ref.value
    follows_directly = layer.index == after + 1 and ref.value == -1
    reads_new_layer = source == after and layer.index > after and (rewire_all or follows_directly)
    new_source = after + 1 if reads_new_layer else source + 1 if source > after else source
    return new_source if ref.value >= 0 else new_source - new_index


def _index_comment_edit(text: str, layer: LayerSpan, new_index: int) -> list[tuple[int, int, str]]:
    """Renumber a trailing comment that starts with the layer's own index (``# 13``, ``# 17 (P3/8-small)``)."""
    comment = _index_comment_match(text, layer)
    if not comment or int(comment.group(1)) != layer.index:
        return []
    return [(comment.start(1), comment.end(1), str(new_index))]


def _index_comment_match(text: str, layer: LayerSpan) -> re.Match[str] | None:
    """The trailing comment of a layer's line when it starts with a number (``# 13``, ``# 0-P1/2``)."""
    _, line_end = _line_bounds(text, layer.end)
    return INDEX_COMMENT.match(text, layer.end, line_end)


def _line_bounds(text: str, position: int) -> tuple[int, int]:
    start = text.rfind("\n", 0, position) + 1
    end = text.find("\n", position)
    return start, len(text) if end < 0 else end


def _new_line_after(text: str, line_end: int, line: str) -> tuple[int, int, str]:
    """An edit adding ``line`` after the line that ends at ``line_end``."""
    if line_end < len(text):
        return line_end + 1, line_end + 1, line + "\n"
    return line_end, line_end, "\n" + line


def _insertion_edits(text: str, layer: LayerSpan, entry: str) -> list[tuple[int, int, str]]:
    """Edits that place ``entry`` right after ``layer``, on a line of its own where the layout allows."""
    line_start, line_end = _line_bounds(text, layer.end)
    own_line = re.fullmatch(r"\s*(,)?\s*(#.*)?", text[layer.end:line_end])
    prefix = text[line_start:layer.start]
    if not layer.flow:
        marker = re.fullmatch(r"(\s*-\s*)", prefix)
        if not own_line or not marker:
            raise YamlEditError(f"layer {layer.index}: expected '- [from, number, module, args]' on a line of its own")
        return [_new_line_after(text, line_end, marker.group(1) + entry)]
    if own_line and re.fullmatch(r"\s*\[?", prefix):
        has_comma = own_line.group(1) is not None
        edits = [] if has_comma else [(layer.end, layer.end, ",")]
        return edits + [_new_line_after(text, line_end, " " * len(prefix) + entry + ("," if has_comma else ""))]
    return [(layer.end, layer.end, f", {entry}")]


def insert_block(text: str, after: int, block: str, args: Any = None, *, rewire_all: bool = False) -> str:
    """Return ``text`` with ``[-1, 1, block, args]`` inserted after layer ``after``, ``from`` indices renumbered.

    ``args`` is a list or the YAML text of one (``"[256]"``); it is parsed with ``yaml.safe_load``.
    """
    spans = layer_spans(text)
    if not 0 <= after < len(spans) - 1:
        last = len(spans) - 1
        raise YamlEditError(f"--after {after}: insert after a layer 0..{last - 1} (layer {last} is the head)")
    _check_block_name(block)
    edits = [
        (ref.start, ref.end, str(new))
        for layer in spans
        for ref in layer.sources
        if (new := _renumbered(layer, ref, after, rewire_all)) != ref.value
    ]
    for layer in spans[after + 1:]:
        edits += _index_comment_edit(text, layer, layer.index + 1)
    edits += _insertion_edits(text, spans[after], f"[-1, 1, {block}, {format_args(args)}]")
    return _apply(text, edits)


def replace_block(text: str, index: int, block: str, args: Any = None) -> str:
    """Return ``text`` with layer ``index``'s module and args replaced; ``from`` and ``number`` are kept."""
    spans = layer_spans(text)
    if not 0 <= index < len(spans):
        raise YamlEditError(f"--replace {index}: the model has layers 0..{len(spans) - 1}")
    _check_block_name(block)
    layer = spans[index]
    return _apply(text, [
        (layer.module.start_mark.index, layer.module.end_mark.index, block),
        (layer.args.start_mark.index, layer.args.end_mark.index, format_args(args)),
    ])


def default_block_args(model_yaml: dict[str, Any], after: int, block: str) -> list[Any]:
    """Args for ``block`` placed after layer ``after``: its ``yaml_example`` args, with the width arg (if its
    rule has one) set so the block keeps the channels of layer ``after``."""
    from yolo_attn.nn.builder import build_model
    from yolo_attn.nn.registry import lookup

    try:
        spec = lookup(block)
    except KeyError as e:
        raise YamlEditError(e.args[0]) from None
    example = getattr(spec.cls, "yaml_example", None)
    if not isinstance(example, str):
        raise YamlEditError(f"{spec.name} has no example YAML line; give its args with --args")
    example_args = yaml.safe_load(example)[3]
    model = build_model(model_yaml)  # its yaml holds the width gain of the chosen scale (Ultralytics' ``scales``)
    records = model.layer_records
    out_shape = records[after].out_shape if 0 <= after < len(records) else None
    if out_shape is None:
        raise YamlEditError(f"layer {after} is not a layer with a feature-map output")
    return spec.rule.args_for_channels(example_args, out_shape[1], float(model.yaml.get("width_multiple", 1.0)))


def pin_scale(text: str, name: str) -> str:
    """``text`` of an Ultralytics YAML (one with ``scales:``) read under ``name``, with the scale that name picks
    written in (``yolo11s.yaml`` -> ``scale: s``), so that the edited copy builds at that scale whatever it is
    called; any other YAML, or one that names its scale already, as it is."""
    from yolo_attn.nn.builder import resolve_scale

    data = yaml.safe_load(text)
    if isinstance(data, dict) and "scales" in data and "scale" not in data:
        scale = resolve_scale({**data, "yaml_file": Path(name).name})["scale"]
        text = f"scale: {scale}  # picked from the base name {Path(name).name}\n{text}"
    return text


def _index_comment(text: str, layer: LayerSpan) -> int | None:
    """The number a layer's trailing comment starts with (``# 13``, ``# 0-P1/2``), if any."""
    comment = _index_comment_match(text, layer)
    return int(comment.group(1)) if comment else None


def hand_edit_warning(text: str, where: str) -> str | None:
    """What to tell about a model YAML whose ``# N`` layer-index comments stop matching the layers' real indices
    (a layer added or removed by hand, without renumbering the ``from`` indices after it): the first line that
    moved and, for an added layer, the ``yolo-attn insert`` command that renumbers. None when every index comment
    matches, or there are none."""
    try:
        spans = layer_spans(text)
    except YamlEditError:
        return None  # the builder reports what is wrong with the layout
    commented = [(layer, number) for layer in spans if (number := _index_comment(text, layer)) is not None]
    moved = next(((layer, number) for layer, number in commented if number != layer.index), None)
    if moved is None:
        return None
    layer, number = moved
    line = text.count("\n", 0, layer.start) + 1
    message = (f"{where} line {line}: '# {number}' is on layer {layer.index}: a layer was added or removed above it "
               "by hand without renumbering, so the 'from' indices after it may read the wrong layers")
    matched = [lay.index for lay, n in commented if n == lay.index and lay.index < layer.index]
    added = next((lay for lay in spans[(matched[-1] + 1 if matched else 0):layer.index]
                  if _index_comment(text, lay) is None), None)
    if number > layer.index or added is None:
        return message
    added_line = text.count("\n", 0, added.start) + 1
    block_args = text[added.args.start_mark.index:added.args.end_mark.index]
    return (f"{message}. If it is {added.module.value} on line {added_line}, remove that line and run: yolo-attn "
            f"insert {shlex.quote(where)} --after {added.index - 1} --block {added.module.value} "
            f"--args {shlex.quote(block_args)}")


def readers_of(text: str, index: int) -> list[int]:
    """Indices of the layers whose ``from`` reads layer ``index``."""
    return [
        layer.index
        for layer in layer_spans(text)
        if any((ref.value if ref.value >= 0 else layer.index + ref.value) == index for ref in layer.sources)
    ]


__all__ = [
    "YamlEditError", "LayerSpan", "layer_spans", "format_args", "insert_block", "replace_block", "readers_of",
    "default_block_args", "resolve_block_name", "pin_scale", "hand_edit_warning",
]
