"""Safe interpretation of the strings a model YAML may hold; nothing is ever evaluated.

YOLOv5 runs ``eval()`` on every string in a model YAML. Here a string is one of: a symbol
(``nc``, ``anchors``, ``None``, ``True``, ``False``), an activation constructor from an
allow-list with literal arguments (``nn.LeakyReLU(0.1)``), or a plain word kept as a string
(``'nearest'``). Anything else is rejected.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from torch import nn

from yolo_attn.nn.blocks.torch_nn import ACTIVATIONS

_PLAIN_WORD = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*$")
_CONSTANTS = {"None": None, "True": True, "False": False}


class UnsafeValueError(ValueError):
    """A YAML string that would need code execution to interpret."""


def parse_activation(text: str) -> nn.Module:
    """Build an activation from ``nn.Name(literal, key=literal)``; the name must be allow-listed."""
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as e:
        raise UnsafeValueError(f"{text!r} is not an activation like nn.SiLU() or nn.LeakyReLU(0.1)") from e
    if isinstance(node, ast.Attribute):  # ``nn.SiLU`` without parentheses
        node = ast.Call(func=node, args=[], keywords=[])
    if not (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id in ("nn", "torch.nn")
    ):
        raise UnsafeValueError(f"{text!r} is not an activation like nn.SiLU() or nn.LeakyReLU(0.1)")
    cls = ACTIVATIONS.get(node.func.attr)
    if cls is None:
        raise UnsafeValueError(f"activation nn.{node.func.attr} is not allowed; allowed: {', '.join(sorted(ACTIVATIONS))}")
    try:
        args = [ast.literal_eval(a) for a in node.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
    except ValueError as e:
        raise UnsafeValueError(f"{text!r}: activation arguments must be literal numbers or booleans") from e
    return cls(*args, **kwargs)


def resolve_value(value: Any, symbols: dict[str, Any]) -> Any:
    """Interpret one YAML arg: symbols by name, allow-listed activations, plain words as strings."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text in symbols:
        return symbols[text]
    if text in _CONSTANTS:
        return _CONSTANTS[text]
    if text.startswith(("nn.", "torch.nn.")):
        return parse_activation(text.removeprefix("torch."))
    if _PLAIN_WORD.match(text):
        return text
    try:
        return ast.literal_eval(text)  # quoted numbers, tuples of numbers
    except (ValueError, SyntaxError):
        raise UnsafeValueError(
            f"{value!r} is not a value a model YAML may hold (symbols nc/anchors/None/True/False, numbers, "
            f"words, or nn.<Activation>(...)); YAML is never evaluated as code"
        ) from None
