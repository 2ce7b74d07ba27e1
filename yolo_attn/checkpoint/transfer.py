"""Moving pretrained weights into a model built from a (possibly different) YAML.

:func:`transfer_weights` matches keys and shapes (YOLOv5's ``intersect_dicts``): right when both YAMLs
are the same, wrong once a layer is inserted, because every later ``model.{i}.`` key shifts.
:func:`transfer_pretrained` aligns the checkpoint's layer list with the model's (a Needleman-Wunsch
alignment of layer signatures: block type, repeats, args and tensor shapes; layers of different
types never pair) and renumbers ``model.{i}.`` keys along it. A tensor only lands in a layer of its
own block type and with its own shape; layers without a counterpart keep their fresh initialisation.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import torch
import yaml
from torch import nn

from yolo_attn.nn.model import DetectionModel
from yolo_attn.nn.registry import lookup

LAYER_KEY = re.compile(r"model\.(\d+)\.(.+)")


def transfer_weights(model: nn.Module, state_dict: dict[str, torch.Tensor], exclude: tuple[str, ...] = ()) -> int:
    """Load every tensor whose key and shape match (and whose key contains none of ``exclude``), as YOLOv5's
    ``intersect_dicts``; returns the count."""
    own = model.state_dict()
    matched = {
        k: v for k, v in state_dict.items()
        if k in own and v.shape == own[k].shape and not any(x in k for x in exclude)
    }
    model.load_state_dict(matched, strict=False)
    return len(matched)


@dataclass(frozen=True)
class LayerSignature:
    """What identifies a layer across two YAMLs: block type, repeats, args and its tensors' shapes."""

    index: int
    type: str
    number: int
    args: str
    tensors: dict[str, tuple[int, ...]]  # key inside the layer -> shape


@dataclass(frozen=True)
class LayerTransfer:
    """One row of the mapping: a pretrained layer and its counterpart (``None``: no counterpart)."""

    source: int | None
    target: int | None
    type: str
    transferred: int
    tensors: int  # the pretrained layer's tensors (the new layer's own when ``source`` is None)


@dataclass(frozen=True)
class TransferReport:
    """The outcome of :func:`transfer_pretrained`; ``keys`` maps each transferred pretrained key to its new key."""

    transferred: int
    total: int
    excluded: int
    layers: tuple[LayerTransfer, ...]
    keys: dict[str, str]

    def mapping(self) -> dict[int, int]:
        """Pretrained layer index -> model layer index, for every paired layer."""
        return {r.source: r.target for r in self.layers if r.source is not None and r.target is not None}

    def new_layers(self) -> set[int]:
        """The model layers without a pretrained counterpart (initialised fresh)."""
        return {r.target for r in self.layers if r.source is None and r.target is not None}

    def summary(self) -> str:
        """One line: how many pretrained tensors moved, and which layers start fresh."""
        line = f"transferred {self.transferred}/{self.total} pretrained tensors"
        if self.excluded:
            line += f" ({self.excluded} anchor tensor(s) kept from the model YAML)"
        new = [f"{r.target} {r.type}" for r in self.layers if r.source is None]
        dropped = [f"{r.source} {r.type}" for r in self.layers if r.target is None and r.tensors]
        if new:
            line += f"; new layers: {', '.join(new)} (initialised fresh)"
        if dropped:
            line += f"; pretrained layers without a counterpart: {', '.join(dropped)}"
        return line

    def table(self) -> str:
        """The per-layer mapping, one line per layer (``--transfer-report``)."""
        lines = ["pretrained -> model  block  tensors transferred"]
        for r in self.layers:
            source = "-" if r.source is None else str(r.source)
            target = "-" if r.target is None else str(r.target)
            done = "new (initialised fresh)" if r.source is None else f"{r.transferred}/{r.tensors}"
            lines.append(f"{source:>10} -> {target:<5}  {r.type:<14} {done}")
        return "\n".join(lines)


def layer_signatures(model_yaml: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> list[LayerSignature]:
    """The signature of every ``backbone + head`` layer of ``model_yaml`` with the tensors of ``state_dict``."""
    tensors: dict[int, dict[str, tuple[int, ...]]] = defaultdict(dict)
    for key, value in state_dict.items():
        if match := LAYER_KEY.fullmatch(key):
            tensors[int(match.group(1))][match.group(2)] = tuple(value.shape)
    signatures = []
    for i, (_, number, module, args) in enumerate(model_yaml["backbone"] + model_yaml["head"]):
        try:
            block = lookup(str(module)).name
        except KeyError:
            block = str(module)
        text = yaml.safe_dump(args, default_flow_style=True).strip()
        signatures.append(LayerSignature(i, block, int(number), text, tensors.get(i, {})))
    return signatures


def pair_score(a: LayerSignature, b: LayerSignature) -> float | None:
    """How alike two layers are; ``None`` when they may not pair (different block types)."""
    if a.type != b.type:
        return None
    shared = sum(1 for k, shape in a.tensors.items() if b.tensors.get(k) == shape)
    fraction = shared / max(len(a.tensors), len(b.tensors), 1)
    return 1.0 + (a.number == b.number) + (a.args == b.args) + 2.0 * fraction


def align_layers(source: list[LayerSignature], target: list[LayerSignature]) -> list[tuple[int, int]]:
    """Needleman-Wunsch alignment (gaps free, pairs scored by :func:`pair_score`): the paired indices, in order."""
    n, m = len(source), len(target)
    best = [[0.0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            score = pair_score(source[i - 1], target[j - 1])
            diagonal = best[i - 1][j - 1] + score if score is not None else float("-inf")
            best[i][j] = max(diagonal, best[i - 1][j], best[i][j - 1])
    pairs, i, j = [], n, m
    while i and j:
        score = pair_score(source[i - 1], target[j - 1])
        if score is not None and best[i][j] == best[i - 1][j - 1] + score:
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif best[i][j] == best[i - 1][j]:
            i -= 1
        else:
            j -= 1
    return pairs[::-1]


def _same_layers(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a["backbone"] + a["head"] == b["backbone"] + b["head"]


def transfer_pretrained(model: DetectionModel, state_dict: dict[str, torch.Tensor], source_yaml: dict[str, Any],
                        exclude: tuple[str, ...] = ()) -> TransferReport:
    """Load ``state_dict`` (a model built from ``source_yaml``) into ``model`` layer by layer: identical YAMLs
    pair layer i with layer i (plain key matching), others along :func:`align_layers`. Tensors whose key
    contains one of ``exclude`` and tensors whose shape differs (Detect outputs when ``nc`` differs) stay."""
    own = model.state_dict()
    source = layer_signatures(source_yaml, state_dict)
    target = layer_signatures(model.yaml, own)
    if _same_layers(source_yaml, model.yaml):
        pairs = [(i, i) for i in range(min(len(source), len(target)))]
    else:
        pairs = align_layers(source, target)
    renumber = dict(pairs)
    keys, excluded = {}, 0
    for key, value in state_dict.items():
        new_key = _renumbered_key(key, renumber)
        if any(x in key for x in exclude):
            excluded += 1
        elif new_key in own and own[new_key].shape == value.shape:
            keys[key] = new_key
    model.load_state_dict({new: state_dict[old] for old, new in keys.items()}, strict=False)
    return TransferReport(len(keys), len(state_dict), excluded, _layer_rows(source, target, pairs, keys), keys)


def _renumbered_key(key: str, renumber: dict[int, int]) -> str | None:
    """``key`` with its layer index renumbered; ``None`` for a layer without a counterpart."""
    match = LAYER_KEY.fullmatch(key)
    if match is None:
        return key
    index = renumber.get(int(match.group(1)))
    return None if index is None else f"model.{index}.{match.group(2)}"


def _layer_rows(source: list[LayerSignature], target: list[LayerSignature], pairs: list[tuple[int, int]],
                keys: dict[str, str]) -> tuple[LayerTransfer, ...]:
    """The report's rows in model order; pretrained layers without a counterpart after their predecessor's row."""
    moved: defaultdict[int, int] = defaultdict(int)
    for old in keys:
        if match := LAYER_KEY.fullmatch(old):
            moved[int(match.group(1))] += 1
    by_target = {t: s for s, t in pairs}
    paired_sources = set(by_target.values())
    rows = []
    for t in target:
        s = by_target.get(t.index)
        if s is None:
            rows.append(LayerTransfer(None, t.index, t.type, 0, len(t.tensors)))
        else:
            rows.append(LayerTransfer(s, t.index, t.type, moved[s], len(source[s].tensors)))
    for layer in source:
        if layer.index not in paired_sources:
            position = next((k for k, r in enumerate(rows) if r.source is not None and r.source > layer.index),
                            len(rows))
            rows.insert(position, LayerTransfer(layer.index, None, layer.type, 0, len(layer.tensors)))
    return tuple(rows)
