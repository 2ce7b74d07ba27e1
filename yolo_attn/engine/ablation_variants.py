"""What an ablation trains: the base model, one variant per attention block and position, and with ``--controls``
two reference variants that ask whether it is the attention, or just the extra layer and parameters:

- **matched**: at the position of the attention blocks, a plain residual convolution block with no attention,
  YOLOv5's ``Bottleneck`` (a 1x1 convolution to a hidden width, a 3x3 convolution back, the input added), whose
  hidden width is chosen so that its parameters come closest to those of the largest attention block at that
  position. When no width lands within :data:`TOLERANCE` (small blocks: one hidden channel costs about 10 x the
  channels in parameters), the 1x1-then-1x1 form is used (a step of about 2 x the channels); when that misses too,
  no matched control is trained there and the report says why.
- **next scale**: the base model one width/depth step up, on the scales its family defines: Ultralytics'
  ``scales`` (n, s, m, l, x), YOLOv7's named models (tiny, base, x; w6, e6, d6, e6e) and YOLOv5's
  ``depth_multiple``/``width_multiple`` pairs (n, s, m, l, x). Where none is defined, the report says so.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, ScalarNode

from yolo_attn.nn.builder import LayerRecord, build_model, model_schema, model_yaml_path
from yolo_attn.nn.model import DetectionModel
from yolo_attn.nn.registry import lookup
from yolo_attn.nn.summary import count_params
from yolo_attn.nn.yaml_edit import default_block_args, insert_block, replace_block

LOGGER = logging.getLogger(__name__)

CONTROL_BLOCK = "Bottleneck"
KERNELS = ((1, 3), (1, 1))  # tried in this order
TOLERANCE = 0.10  # the matched control's parameters within this fraction of the attention block's
BASE, ATTENTION, MATCHED, NEXT_SCALE = "base", "attention", "matched", "next scale"  # the kinds of variant
NEXT_SCALE_NAME = "next-scale"
YOLOV5_SCALES = {"n": (0.33, 0.25), "s": (0.33, 0.50), "m": (0.67, 0.75), "l": (1.0, 1.0), "x": (1.33, 1.25)}
YOLOV7_SCALES = (("yolov7-tiny", "yolov7", "yolov7x"), ("yolov7-w6", "yolov7-e6", "yolov7-d6", "yolov7-e6e"))


@dataclass(frozen=True)
class Variant:
    """One model to train: its name, kind (:data:`BASE`, :data:`ATTENTION`, :data:`MATCHED`, :data:`NEXT_SCALE`),
    where its block went (``placement``: ``("after" | "replace", layer)``; ``position``: the same in words) and
    the YAML text. ``note``: how a control was made."""

    name: str
    position: str
    yaml_text: str
    kind: str = ATTENTION
    placement: tuple[str, int] | None = None
    note: str = ""


def edit(base_text: str, placement: tuple[str, int], block: str, args: Any, rewire_all: bool = True) -> str:
    """The base YAML with ``block`` inserted after, or put in place of, the layer of ``placement`` (``rewire_all``:
    see :func:`~yolo_attn.nn.yaml_edit.insert_block`)."""
    mode, index = placement
    if mode == "replace":
        return replace_block(base_text, index, block, args)
    return insert_block(base_text, index, block, args, rewire_all=rewire_all)


def block_index(placement: tuple[str, int]) -> int:
    """The layer index the block has in the edited model."""
    mode, index = placement
    return index if mode == "replace" else index + 1


def layer_records(model: DetectionModel) -> list[LayerRecord]:
    """The summary rows the builder leaves on a model (one per YAML layer)."""
    return model.layer_records


def block_params(model: DetectionModel, placement: tuple[str, int]) -> int:
    return layer_records(model)[block_index(placement)].params


def plan_variants(base_text: str, blocks: Sequence[str], after: Sequence[int] | None, replace: int | None,
                  args: str | None, rewire_all: bool = True) -> list[Variant]:
    """The base model plus one variant per block and position (``after`` each layer of ``after``, or in place of
    layer ``replace``; neither: after the last backbone layer). ``args``: every block's YAML args (default: its
    example args fitted to the layer's channels)."""
    base_yaml = yaml.safe_load(base_text)
    if replace is not None:
        placements = [("replace", replace)]
    else:
        placements = [("after", i) for i in (after if after is not None else [len(base_yaml["backbone"]) - 1])]
    variants = [Variant(BASE, "-", base_text, BASE)]
    for block in blocks:
        for mode, index in placements:
            block_args = args if args is not None else default_block_args(base_yaml, index, block)
            text = edit(base_text, (mode, index), block, block_args, rewire_all)
            variants.append(Variant(f"{block}-{mode}{index}", f"{mode} {index}", text, ATTENTION, (mode, index)))
    return variants


# -- matched control ----------------------------------------------------------------------------------------------

def control_args(c2: int, hidden: float, kernels: tuple[int, int], schema: str) -> list[Any]:
    """YAML args of the control block: YOLOv5's Bottleneck ``[c2, shortcut, g, e, k]``; Ultralytics' schema
    reads that name as its own Bottleneck, ``[c2, shortcut, g, k, e]``."""
    if schema == "ultralytics":
        return [c2, True, 1, list(kernels), hidden]
    return [c2, True, 1, hidden, list(kernels)]


def layer_channels(model: DetectionModel, placement: tuple[str, int]) -> tuple[int, int] | None:
    """(input, output) channels a block at ``placement`` of ``model`` (the base) has; ``None`` for a replaced
    layer that reads several layers."""
    mode, index = placement
    records = layer_records(model)
    shape = records[index].out_shape
    if shape is None:
        return None
    if mode == "after":
        return shape[1], shape[1]
    source = records[index].source
    source_shape = records[index + source if source < 0 else source].out_shape if isinstance(source, int) else None
    return None if source_shape is None else (source_shape[1], shape[1])


def size_control(target: int, channels: tuple[int, int], schema: str) -> tuple[int, tuple[int, int], int] | None:
    """(hidden width, kernels, parameters) of the control block closest to ``target`` parameters, within
    :data:`TOLERANCE`, trying :data:`KERNELS` in order; ``None`` when none fits. The block's parameter count is
    linear in the hidden width, so two sizes give the width to use."""
    block = lookup(CONTROL_BLOCK, schema).cls
    c_in, c_out = channels

    def params(hidden: int, kernels: tuple[int, int]) -> int:
        e = (hidden + 0.5) / c_out  # int(c_out * e) == hidden
        return count_params(block(c_in, c_out, *control_args(c_out, e, kernels, schema)[1:]))

    for kernels in KERNELS:
        one, two = params(1, kernels), params(2, kernels)
        hidden = max(1, round(1 + (target - one) / (two - one)))
        got = params(hidden, kernels)
        if abs(got - target) <= TOLERANCE * target:
            return hidden, kernels, got
    return None


def largest_blocks(variants: Sequence[Variant]) -> dict[tuple[str, int], tuple[int, str]]:
    """placement -> (parameters, name) of the largest attention block among ``variants`` there."""
    largest: dict[tuple[str, int], tuple[int, str]] = {}
    for v in variants:
        if v.kind == ATTENTION and v.placement is not None:
            size = block_params(build_model(yaml.safe_load(v.yaml_text)), v.placement)
            largest[v.placement] = max(largest.get(v.placement, (-1, "")), (size, v.name))
    return largest


def matched_controls(base_text: str, variants: Sequence[Variant],
                     rewire_all: bool = True) -> tuple[list[Variant], list[str]]:
    """One matched control per placement of the attention ``variants``, sized to the largest block there; and
    notes for the placements where none could be matched."""
    return controls_for(base_text, largest_blocks(variants), rewire_all)


def controls_for(base_text: str, targets: dict[tuple[str, int], tuple[int, str]],
                 rewire_all: bool = True) -> tuple[list[Variant], list[str]]:
    """A control per placement of ``targets`` (placement -> (parameters to match, the block's variant name)), wired
    as :func:`edit` with ``rewire_all``."""
    base_yaml = yaml.safe_load(base_text)
    base = build_model(base_yaml)
    schema = model_schema(base_yaml)
    width = float(base.yaml.get("width_multiple", 1.0))
    controls, notes = [], []
    for placement, (target, largest) in targets.items():
        mode, index = placement
        channels = layer_channels(base, placement)
        fit = size_control(target, channels, schema) if channels is not None and target > 0 else None
        if channels is None or fit is None:
            notes.append(f"no matched control {mode} {index}: no {CONTROL_BLOCK} comes within {TOLERANCE:.0%} of the "
                         f"{target:,} parameters of {largest}")
            continue
        hidden, kernels, params = fit
        c2 = lookup(CONTROL_BLOCK, schema).rule.args_for_channels([0], channels[1], width)[0]
        args = control_args(c2, round((hidden + 0.5) / channels[1], 6), kernels, schema)
        note = (f"{CONTROL_BLOCK} {kernels[0]}x{kernels[0]}-{kernels[1]}x{kernels[1]}, hidden width {hidden}: "
                f"{params:,} parameters for the {target:,} of {largest} ({params / target - 1:+.1%})")
        text = edit(base_text, placement, CONTROL_BLOCK, args, rewire_all)
        controls.append(Variant(f"control-{mode}{index}", f"{mode} {index}", text, MATCHED, placement, note))
        LOGGER.info(f"ablate: matched control {mode} {index}: {note}")
    return controls, notes


# -- next scale ----------------------------------------------------------------------------------------------------

def set_top_level(text: str, values: dict[str, Any]) -> str:
    """``text`` with the top-level scalars ``values`` rewritten in place (or added on top when missing)."""
    root = yaml.compose(text)
    edits, missing = [], dict(values)
    if isinstance(root, MappingNode):
        for key, node in root.value:
            if isinstance(key, ScalarNode) and key.value in missing and isinstance(node, ScalarNode):
                edits.append((node.start_mark.index, node.end_mark.index, str(missing.pop(key.value))))
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    return "".join(f"{key}: {value}\n" for key, value in missing.items()) + text


def next_scale(base_name: str, base_text: str) -> tuple[Variant | None, str]:
    """The next-scale variant of the base model and a sentence saying what it is (or why there is none)."""
    data = yaml.safe_load(base_text)
    stem = Path(base_name).stem
    if "scales" in data:
        keys = list(data["scales"])
        current = str(data.get("scale", keys[0]))
        if current not in keys or keys.index(current) + 1 == len(keys):
            return None, f"no next scale: {current} is the largest of {stem}'s scales ({', '.join(keys)})"
        step = keys[keys.index(current) + 1]
        return (Variant(NEXT_SCALE_NAME, f"scale {step}", set_top_level(base_text, {"scale": step}),
                        NEXT_SCALE), f"next scale: {stem} at Ultralytics' scale {step} (from {current})")
    for chain in YOLOV7_SCALES:
        if stem in chain:
            if stem == chain[-1] or not model_yaml_path(f"{chain[chain.index(stem) + 1]}.yaml").is_file():
                return None, f"no next scale: no YOLOv7 model above {stem} is built in"
            step = chain[chain.index(stem) + 1]
            text = model_yaml_path(f"{step}.yaml").read_text(encoding="utf-8")
            return Variant(NEXT_SCALE_NAME, step, text, NEXT_SCALE), f"next scale: YOLOv7's {step}"
    multiples = (data.get("depth_multiple"), data.get("width_multiple"))
    names = list(YOLOV5_SCALES)
    below = next((k for k, v in YOLOV5_SCALES.items() if v == multiples), None)
    if below is None or below == names[-1]:
        return None, (f"no next scale: {stem} (depth {multiples[0]}, width {multiples[1]}) is not below one of "
                      "YOLOv5's scales n, s, m, l, x")
    step = names[names.index(below) + 1]
    depth, width = YOLOV5_SCALES[step]
    text = set_top_level(base_text, {"depth_multiple": depth, "width_multiple": f"{width:.2f}"})
    return (Variant(NEXT_SCALE_NAME, f"scale {step}", text, NEXT_SCALE),
            f"next scale: {stem} at YOLOv5's {step} multiples (depth {depth}, width {width:.2f}; from {below})")
