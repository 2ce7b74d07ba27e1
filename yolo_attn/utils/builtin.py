"""The configs that come with yolo-attn (model, attention and hyperparameter YAMLs), found by bare name."""

from __future__ import annotations

from pathlib import Path

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
