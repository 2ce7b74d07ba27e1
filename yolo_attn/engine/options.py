"""Options declared once, on a config dataclass's fields: default, help, flags, choices and bounds together.

A field made with :func:`option` carries an :class:`Option` in its metadata under :data:`OPTION`;
:func:`yolo_attn.commands.common.add_config_arguments` turns each such field into a command-line flag
whose type comes from the field's annotation (``bool``: a switch; ``int``, ``float``: converted and checked
against the option's :class:`Bounds` while the flags are parsed; ``bool | str``: a flag with an optional value;
``tuple[int, ...]``: one or more values). The library itself parses no arguments; :func:`check_options` applies
the same bounds to a config built in Python.

The spellings YOLOv5 and Ultralytics users type are aliases of one flag (:data:`IMG_FLAGS`, ...), shared by every
command that has the option.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from yolo_attn.errors import UserError

OPTION = "option"  # the metadata key of a field's Option

# One option, every spelling: ours first, then YOLOv5's (``--imgsz``, ``--conf-thres``) and its older ones.
IMG_FLAGS = ("--img", "--imgsz", "--img-size")
BATCH_FLAGS = ("--batch", "--batch-size")
CONF_FLAGS = ("--conf", "--conf-thres")
IOU_FLAGS = ("--iou", "--iou-thres")


@dataclass(frozen=True)
class Bounds:
    """The numbers an option accepts: ``low <= value <= high`` (either may be open), or one of ``also``
    (``--batch -1``: the automatic batch size)."""

    low: float | None = None
    high: float | None = None
    also: tuple[float, ...] = ()

    def accepts(self, value: float) -> bool:
        inside = (self.low is None or value >= self.low) and (self.high is None or value <= self.high)
        return inside or value in self.also

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            text = f"between {self.low:g} and {self.high:g}"
        elif self.low is not None:
            text = f"at least {self.low:g}"
        else:
            text = f"at most {self.high:g}"
        return text + "".join(f", or {v:g}" for v in self.also)

    def check(self, value: float) -> None:
        """ValueError saying what is accepted when ``value`` is not."""
        if not self.accepts(value):
            raise ValueError(f"must be {self.describe()}")


POSITIVE = Bounds(1)  # sizes and counts (image size, epochs, batch, max detections)
NON_NEGATIVE = Bounds(0)  # workers, patience-like counts where 0 means none
UNIT = Bounds(0, 1)  # probabilities and thresholds (confidence, IoU)


@dataclass(frozen=True)
class Option:
    """How a config field appears on the command line. ``flags``: its spellings, the first the main one
    (default ``--field-name``). ``bounds``: the numbers it accepts. ``const``: the value of the flag given
    without one (``--cache`` alone is ``--cache ram``)."""

    help: str
    flags: tuple[str, ...] = ()
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    bounds: Bounds | None = None
    const: Any = None

    def spellings(self, name: str) -> tuple[str, ...]:
        return self.flags or (f"--{name.replace('_', '-')}",)


def option(default: Any, help: str, *, flags: tuple[str, ...] = (), choices: tuple[str, ...] | None = None,
           metavar: str | None = None, bounds: Bounds | None = None, const: Any = None, **metadata: Any) -> Any:
    """A dataclass field with ``default`` that is also a command-line option; ``metadata`` is kept beside it."""
    return field(default=default, metadata={OPTION: Option(help, flags, choices, metavar, bounds, const), **metadata})


def check_options(config: Any) -> None:
    """Raise :class:`UserError` naming the flag when a field of the dataclass ``config`` is outside its option's
    bounds or choices (what the command line refuses while parsing, for configs built in Python)."""
    for f in dataclasses.fields(config):
        declared = f.metadata.get(OPTION)
        value = getattr(config, f.name)
        if declared is None or value is None or isinstance(value, bool):
            continue
        flag = declared.spellings(f.name)[0]
        if declared.choices is not None and isinstance(value, str) and value not in declared.choices:
            raise UserError(f"{flag} {value!r}: choose from {', '.join(declared.choices)}")
        for item in value if isinstance(value, (tuple, list)) else (value,):
            if declared.bounds is not None and isinstance(item, (int, float)):
                try:
                    declared.bounds.check(item)
                except ValueError as e:
                    raise UserError(f"{flag} {item!r}: {e}") from None
