"""Reading the YAML files users hand us (model, dataset, hyperparameters): safe_load only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from yolo_attn.errors import UserError


def read_yaml_mapping(path: str | Path, what: str, error: type[UserError] = UserError) -> dict[str, Any]:
    """The mapping in YAML file ``path``; ``error`` (naming the file and ``what`` it should be) otherwise."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise error(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected a mapping ({what}), got {type(data).__name__}")
    return data
