"""Options declared once, on a config dataclass's fields: default, help, flags and choices together.

A field made with :func:`option` carries an :class:`Option` in its metadata under :data:`OPTION`;
:func:`yolo_attn.commands.common.add_config_arguments` turns each such field into a command-line flag
whose type comes from the field's annotation (``bool``: a switch; ``int``, ``float``: converted;
``bool | str``: a flag with an optional value). The library itself parses no arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

OPTION = "option"  # the metadata key of a field's Option


@dataclass(frozen=True)
class Option:
    """How a config field appears on the command line. ``flags``: its spellings, the first the main one
    (default ``--field-name``)."""

    help: str
    flags: tuple[str, ...] = ()
    choices: tuple[str, ...] | None = None
    metavar: str | None = None

    def spellings(self, name: str) -> tuple[str, ...]:
        return self.flags or (f"--{name.replace('_', '-')}",)


def option(default: Any, help: str, *, flags: tuple[str, ...] = (), choices: tuple[str, ...] | None = None,
           metavar: str | None = None, **metadata: Any) -> Any:
    """A dataclass field with ``default`` that is also a command-line option; ``metadata`` is kept beside it."""
    return field(default=default, metadata={OPTION: Option(help, flags, choices, metavar), **metadata})
