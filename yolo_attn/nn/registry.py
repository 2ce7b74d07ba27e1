"""Block registry: YAML names and aliases -> module classes, each with the YAML rule it declares.

A block declares how a YAML line ``[from, number, Block, args]`` becomes constructor arguments
and an output channel count by passing a :class:`~yolo_attn.nn.rules.YamlRule` to :func:`register`
beside its class. The builder only ever asks the rule; it has no per-block branches.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from torch import nn

from yolo_attn.nn.rules import PASS_THROUGH, YamlRule


@dataclass(frozen=True)
class BlockSpec:
    """A registered block: its canonical name, class, rule and aliases."""

    name: str
    cls: type[nn.Module]
    rule: YamlRule
    aliases: tuple[str, ...] = ()
    schema: str | None = None  # set: this class is what the name means in YAMLs of that schema only


_BLOCKS: dict[str, BlockSpec] = {}
_CANONICAL: dict[str, BlockSpec] = {}
_BY_SCHEMA: dict[tuple[str, str], BlockSpec] = {}
_REFUSED: dict[str, str] = {}


def refuse(*names: str, reason: str) -> None:
    """Declare YAML block names that yolo-attn knows and deliberately does not build, with the reason a user
    reads (``lookup`` raises it): a YAML naming one is refused in one line instead of 'unknown block'."""
    for key in names:
        _REFUSED[key] = reason


def register(*aliases: str, rule: YamlRule = PASS_THROUGH, name: str | None = None, schema: str | None = None,
             override: bool = False):
    """Class decorator: register a block under its class name (or ``name``) and ``aliases``.

    With ``schema``, the names mean this class only in YAMLs of that schema (``"ultralytics"``: Ultralytics'
    ``Bottleneck`` is 3x3 + 3x3 where YOLOv5's is 1x1 + 3x3); elsewhere they keep their usual meaning.
    A name already registered to another class is refused unless ``override`` (a plugin replacing a built-in
    block: the names then mean this class in every schema).
    """

    def decorate(cls: type[nn.Module]) -> type[nn.Module]:
        canonical = name or cls.__name__
        spec = BlockSpec(canonical, cls, rule, tuple(aliases), schema)
        if schema is not None:
            for key in (canonical, *aliases):
                if (schema, key) in _BY_SCHEMA:
                    raise ValueError(f"block name {key!r} is already registered for the {schema} schema")
                _BY_SCHEMA[schema, key] = spec
            return cls
        for key in (canonical, *aliases):
            previous = _BLOCKS.get(key)
            if previous is not None and previous.cls is not cls and not override:
                raise ValueError(f"block name {key!r} is already registered to {previous.cls.__qualname__} "
                                 "(register(..., override=True) replaces it)")
            _BLOCKS[key] = spec
            if override:
                for key_schema in [k for k in _BY_SCHEMA if k[1] == key]:
                    del _BY_SCHEMA[key_schema]
        _CANONICAL[canonical] = spec
        return cls

    return decorate


def register_external(cls: type[nn.Module], *aliases: str, rule: YamlRule = PASS_THROUGH, name: str) -> None:
    """Register a class defined elsewhere (e.g. ``torch.nn.Upsample`` as ``nn.Upsample``)."""
    register(*aliases, rule=rule, name=name)(cls)


def ensure_loaded() -> None:
    """Register the built-in blocks (importing the block packages runs their ``@register`` decorators)."""
    import yolo_attn.nn.attention  # noqa: F401
    import yolo_attn.nn.blocks  # noqa: F401
    import yolo_attn.nn.heads  # noqa: F401


def lookup(name: str, schema: str | None = None) -> BlockSpec:
    """Return the spec registered for ``name`` (in YAMLs of ``schema``); KeyError with close matches when unknown."""
    ensure_loaded()
    spec = _BY_SCHEMA.get((schema, name)) if schema else None
    spec = spec or _BLOCKS.get(name)
    if spec is None and name in _REFUSED:
        raise KeyError(f"{name!r} is not supported: {_REFUSED[name]}")
    if spec is None:
        close = difflib.get_close_matches(name, _BLOCKS, n=3, cutoff=0.5)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        if re.search(r"[/\\:]|\.py$|\w\.\w", name):
            hint += ("; a model YAML names registered blocks only, it never imports a file or module: "
                     "load your block with --plugin FILE.py or $YOLO_ATTN_PLUGINS")
        raise KeyError(f"unknown block {name!r}{hint}")
    return spec


def all_blocks() -> list[BlockSpec]:
    """Every registered block once, sorted by canonical name."""
    ensure_loaded()
    return sorted(_CANONICAL.values(), key=lambda s: s.name.lower())
