"""The configs that come with yolo-attn (model, attention and hyperparameter YAMLs), found by bare name."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import yaml

# In a source checkout ``yolo_attn/configs`` links to the top-level ``configs/``; a wheel carries the files there.
CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"
KINDS = {"model": ("models", "attention"), "hyp": ("hyps",)}


def builtin_config(name: str | Path, kind: str) -> Path:
    """``name`` itself when it is an existing path, else the built-in config of that file name (``yolov5s.yaml``,
    ``hyp.scratch-low.yaml``); a name found nowhere is returned unchanged for the reader to report."""
    path = Path(name)
    if path.exists() or path.parent != Path("."):
        return path
    for folder in KINDS[kind]:
        candidate = CONFIGS_DIR / folder / path.name
        if candidate.is_file():
            return candidate
    return path


def is_builtin_model(model_yaml: dict[str, Any]) -> bool:
    """Whether ``model_yaml`` is one of the model configs that come with yolo-attn, whatever its ``nc`` and
    ``ch`` (an official checkpoint's own YAML, say): the tests build every one, so their stride probe needs
    no dry run in the resource guard."""
    return _layout_key(model_yaml) in _builtin_layouts()


def _layout_key(model_yaml: dict[str, Any]) -> str:
    # nc and ch may be overridden, and yaml_file is the name the YAML was read under (added by load_model_yaml);
    # an Ultralytics checkpoint's YAML adds the scale it was built at (one of its 'scales', which are compared) and
    # its input channels as 'channels'
    ignored = ("nc", "ch", "yaml_file", "scale", "channels")
    return json.dumps({k: v for k, v in model_yaml.items() if k not in ignored}, sort_keys=True, default=str)


@functools.cache
def _builtin_layouts() -> frozenset[str]:
    paths = [p for folder in KINDS["model"] for p in sorted((CONFIGS_DIR / folder).rglob("*.yaml"))]
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return frozenset(_layout_key(yaml.load(p.read_text(encoding="utf-8"), Loader=loader)) for p in paths)
