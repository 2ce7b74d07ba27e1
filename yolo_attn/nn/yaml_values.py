"""Safe interpretation of the strings a model YAML may hold; nothing is ever evaluated.

YOLOv5 runs ``eval()`` on every string in a model YAML. Here a string is one of: a symbol
(``nc``, ``anchors``, ``None``, ``True``, ``False``), an activation constructor from an
allow-list with literal arguments (``nn.LeakyReLU(0.1)``), or a plain word kept as a string
(``'nearest'``). Anything else is rejected, as are values no model YAML holds: mappings, dates,
bytes, NaN or infinite floats, integers beyond 64 bits, lists nested deeper than ``MAX_NESTING``.
"""

from __future__ import annotations

import ast
import math
import re
from typing import Any

from torch import nn

from yolo_attn.nn.blocks.torch_nn import ACTIVATIONS

_PLAIN_WORD = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*$")
_CONSTANTS = {"None": None, "True": True, "False": False}
MAX_NESTING = 3  # [[10, 13, 16, 30], ...] anchors inside args are two levels deep
MAX_ACTIVATION_ARG = 10_000  # nn.PReLU(num_parameters) allocates this many parameters per layer
_INT64 = 2**63 - 1


class UnsafeValueError(ValueError):
    """A YAML value that is not a model-YAML value: a string that would need code execution, or junk."""


def _activation_literal(node: ast.expr, text: str) -> bool | int | float:
    """A number or boolean argument of an activation, bounded so it cannot allocate much."""
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        value = ast.unparse(node)
    if isinstance(value, bool) or (isinstance(value, (int, float)) and abs(value) <= MAX_ACTIVATION_ARG):
        return value
    raise UnsafeValueError(
        f"{text!r}: activation arguments must be numbers within +-{MAX_ACTIVATION_ARG:,} or booleans, got {value!r}"
    )


def parse_activation(text: Any) -> nn.Module:
    """Build an activation from ``nn.Name(literal, key=literal)``; the name must be allow-listed."""
    if not isinstance(text, str):
        raise UnsafeValueError(f"{text!r} is not an activation; write a string like nn.SiLU() or nn.LeakyReLU(0.1)")
    try:  # Ultralytics' YAMLs write the module path in full: ``activation: torch.nn.ReLU()``
        node = ast.parse(text.strip().removeprefix("torch."), mode="eval").body
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
        allowed = ", ".join(sorted(ACTIVATIONS))
        raise UnsafeValueError(f"activation nn.{node.func.attr} is not allowed; allowed: {allowed}")
    args = [_activation_literal(a, text) for a in node.args]
    if any(k.arg is None for k in node.keywords):
        raise UnsafeValueError(f"{text!r}: ** arguments are not allowed in an activation")
    kwargs = {k.arg: _activation_literal(k.value, text) for k in node.keywords if k.arg is not None}
    try:
        return cls(*args, **kwargs)
    except (ValueError, TypeError, RuntimeError) as e:
        raise UnsafeValueError(f"{text!r}: not a valid activation ({e})") from e


def _problem(value: Any, depth: int = 0) -> str | None:
    """Why ``value`` is not a model-YAML arg (a number, bool, None, word or list of those), or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value!r} is not a finite number"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > _INT64:
        return f"{value} is beyond 64-bit integers"
    if isinstance(value, (list, tuple)):
        if depth >= MAX_NESTING:
            return f"lists are nested more than {MAX_NESTING} deep"
        return next(filter(None, (_problem(item, depth + 1) for item in value)), None)
    if value is None or isinstance(value, (bool, str, int, float)):
        return None
    return f"a {type(value).__name__} is not a model-YAML value"


def _check_plain(value: Any) -> Any:
    """``value`` itself if it may be a model-YAML arg; UnsafeValueError naming what is wrong otherwise."""
    problem = _problem(value)
    if problem:
        raise UnsafeValueError(f"{value!r}: {problem} (args are numbers, words, lists of them or nn.<Activation>(...))")
    return value


def resolve_value(value: Any, symbols: dict[str, Any]) -> Any:
    """Interpret one YAML arg: symbols by name, allow-listed activations, plain words as strings."""
    if not isinstance(value, str):
        return _check_plain(value)
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
        parsed = ast.literal_eval(text)  # quoted numbers, tuples of numbers
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise UnsafeValueError(
            f"{value!r} is not a value a model YAML may hold (symbols nc/anchors/None/True/False, numbers, "
            f"words, or nn.<Activation>(...)); YAML is never evaluated as code"
        ) from None
    return _check_plain(parsed)
