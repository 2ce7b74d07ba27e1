"""YAML rules: how a model-YAML line ``[from, number, Block, args]`` becomes a constructed block.

Every block declares one rule beside its class (``@register(rule=...)``). A rule turns the YAML
``args`` plus what the builder knows at that layer (input channels, depth/width gains, ``nc``)
into constructor arguments, the block's output channel count and the number of stacked copies.
The rules below cover the YOLOv5 / YOLOv7 / YOLOAir conventions; a block with unusual needs
subclasses :class:`YamlRule` next to its own class.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

MAX_ANCHORS_PER_LEVEL = 10_000  # an int ``anchors`` arg expands to a placeholder list of twice this length


def _is_count(value: Any) -> bool:
    """A positive int (not a bool): a channel or anchor count."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def make_divisible(x: float, divisor: int) -> int:
    """Smallest multiple of ``divisor`` that is >= ``x`` (YOLOv5's width rounding)."""
    return int(math.ceil(x / divisor) * divisor)


@dataclass(frozen=True)
class LayerContext:
    """What the builder knows when it resolves layer ``index``."""

    index: int
    c_in: tuple[int, ...]  # channels of each input, in ``from`` order
    number: int  # YAML ``number`` after the depth gain
    width_multiple: float
    channel_multiple: int
    nc: int
    num_outputs: int  # detection output width na * (nc + 5); never width-scaled
    max_channels: float = math.inf  # Ultralytics' per-scale cap, applied before the width gain
    scale: str | None = None  # the ``scales`` key the model was built with (Ultralytics YAMLs), else None
    earlier: tuple[type, ...] = ()  # classes of the layers built before this one
    schema: str = "yolov5"  # "ultralytics" for Ultralytics' YAMLs (see builder.model_schema), else "yolov5"
    options: Mapping[str, Any] = field(default_factory=dict)  # the YAML's other top-level keys (end2end, reg_max)

    def scale_width(self, c: int) -> int:
        """Width gain for a channel count (capped at ``max_channels`` first), leaving the detection output alone."""
        if c == self.num_outputs:
            return c
        return make_divisible(min(c, self.max_channels) * self.width_multiple, self.channel_multiple)


@dataclass(frozen=True)
class Resolved:
    """Constructor arguments, output channels and stacked copies for one layer; ``block``: the class to
    build when the rule picks one other than the registered class (one YAML name, two layouts);
    ``kwargs``: constructor arguments passed by keyword (see :class:`Keywords`)."""

    args: list[Any]
    c_out: int
    number: int
    block: type | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)


class YamlRule:
    """Base rule. ``signature`` documents the YAML args a user writes."""

    signature: str = "[...]"

    def resolve(self, args: list[Any], ctx: LayerContext) -> Resolved:
        raise NotImplementedError

    def args_for_channels(self, args: list[Any], channels: int, width_multiple: float = 1.0) -> list[Any]:
        """``args`` adapted so the block fits after a layer with ``channels`` outputs in a model scaled by
        ``width_multiple`` (used to place a block with default args); rules without channel args keep them."""
        return list(args)


@dataclass(frozen=True)
class PassThrough(YamlRule):
    """YOLOv5's fallback: args passed as written, output channels = input channels."""

    signature: str = "[*args]"

    def resolve(self, args: list[Any], ctx: LayerContext) -> Resolved:
        return Resolved(list(args), ctx.c_in[0], ctx.number)


@dataclass(frozen=True)
class ConvLike(YamlRule):
    """``[c2, *rest]`` -> ``Block(c1, scaled c2, *rest)``; output channels are the scaled ``c2``.

    ``repeat_inside``: the YAML ``number`` is passed as the third constructor argument (C3's
    ``n``) instead of stacking copies; with ``stack_too`` that many copies are stacked as well
    (YOLOAir's MobileOne line). ``extra_widths``: further YAML arg positions that are channel
    counts and get the same width gain.
    """

    repeat_inside: bool = False
    stack_too: bool = False
    extra_widths: tuple[int, ...] = ()
    signature: str = "[c2, *args]"

    def resolve(self, args: list[Any], ctx: LayerContext) -> Resolved:
        if not args or not _is_count(args[0]):
            raise ValueError(f"expects output channels as its first arg (a positive int), got {args!r}")
        rest = list(args[1:])
        for pos in self.extra_widths:
            if pos - 1 < len(rest) and isinstance(rest[pos - 1], int):
                rest[pos - 1] = ctx.scale_width(rest[pos - 1])
        c2 = ctx.scale_width(args[0])
        built = [ctx.c_in[0], c2, *rest]
        number = ctx.number
        if self.repeat_inside:
            built.insert(2, number)
            number = number if self.stack_too else 1
        return Resolved(built, c2, number)

    def args_for_channels(self, args: list[Any], channels: int, width_multiple: float = 1.0) -> list[Any]:
        return [round(channels / width_multiple), *args[1:]]


@dataclass(frozen=True)
class PrependInput(YamlRule):
    """``[*args]`` -> ``Block(c1, *args)``; output channels = input channels (e.g. BatchNorm2d, SE)."""

    signature: str = "[*args]"

    def resolve(self, args: list[Any], ctx: LayerContext) -> Resolved:
        return Resolved([ctx.c_in[0], *args], ctx.c_in[0], ctx.number)


@dataclass(frozen=True)
class SameWidth(YamlRule):
    """Channel-keeping blocks written like convolutions: ``[c2?, *args]``, as YOLOAir registers attention.

    ``c2`` gets the width gain and must then equal the input channels (checked here, so a wrong value
    names the layer instead of failing in the next one); it may be omitted. ``pass_width``: the block
    is built as ``Block(c1, c2, *args)`` (YOLOAir's CBAM, GAMAttention) or ``Block(c1, *args)``
    (YOLOAir's attention branch: SE, SK, ECA, ...). ``one_copy``: one block whatever ``number`` says
    (YOLOAir's HorBlock and ConvNextBlock lines, where ``number`` lands in an unrelated constructor slot).
    """

    pass_width: bool = True
    one_copy: bool = False
    signature: str = "[c2=c1, *args]"

    def resolve(self, args: list[Any], ctx: LayerContext) -> Resolved:
        c1 = ctx.c_in[0]
        if args and not _is_count(args[0]):
            raise ValueError(f"expects output channels (= input channels) as its first arg, got {args!r}")
        c2 = ctx.scale_width(args[0]) if args else c1
        if c2 != c1:
            raise ValueError(f"keeps its input channels, but the output width is {c2} for {c1} input channels")
        rest = list(args[1:])
        number = 1 if self.one_copy else ctx.number
        return Resolved([c1, c2, *rest] if self.pass_width else [c1, *rest], c1, number)

    def args_for_channels(self, args: list[Any], channels: int, width_multiple: float = 1.0) -> list[Any]:
        return [round(channels / width_multiple), *args[1:]] if args else []


@dataclass(frozen=True)
class LiteralChannels(YamlRule):
    """YOLOv5's fallback for channel-keeping blocks whose args repeat the real input channels at
    ``positions`` (as written, no width gain); those args are checked against the input."""

    positions: tuple[int, ...] = (0,)
    signature: str = "[c1, *args]"

    def resolve(self, args: list[Any], ctx: LayerContext) -> Resolved:
        c1 = ctx.c_in[0]
        for position in self.positions:
            if position < len(args) and args[position] != c1:
                raise ValueError(
                    f"arg {position} is {args[position]!r} but the input has {c1} channels "
                    "(this block's args are passed as written, without width gain)"
                )
        return Resolved(list(args), c1, ctx.number)

    def args_for_channels(self, args: list[Any], channels: int, width_multiple: float = 1.0) -> list[Any]:
        adapted = list(args)
        for position in self.positions:
            if position < len(adapted):
                adapted[position] = channels
        return adapted


@dataclass(frozen=True)
class LeadingChannels(YamlRule):
    """``[c2, *args]`` -> ``Block(*args)``: the output channels are declared first, as written (no width
    gain), and are not passed to the block (YOLOAir's whole-backbone stages such as ConvNeXt and HorNet)."""

    signature: str = "[c2, *args]"

    def resolve(self, args: list[Any], ctx: LayerContext) -> Resolved:
        if not args or not isinstance(args[0], int) or isinstance(args[0], bool):
            raise ValueError(f"expects its output channels as its first arg, got {args!r}")
        return Resolved(list(args[1:]), args[0], ctx.number)


@dataclass(frozen=True)
class SumInputs(YamlRule):
    """Multi-input blocks whose output channels are the sum of the inputs' (Concat)."""

    signature: str = "[dimension=1]"

    def resolve(self, args: list[Any], ctx: LayerContext) -> Resolved:
        return Resolved(list(args), sum(ctx.c_in), ctx.number)


@dataclass(frozen=True)
class ChannelFunction(YamlRule):
    """Args as written; output channels computed by ``channels(c_in, args)`` (Contract, ReOrg, ...)."""

    channels: Callable[[tuple[int, ...], list[Any]], int] = lambda c_in, args: c_in[0]
    signature: str = "[*args]"

    def resolve(self, args: list[Any], ctx: LayerContext) -> Resolved:
        c_out = int(self.channels(ctx.c_in, list(args)))
        if c_out < 1:
            raise ValueError(f"gives {c_out} output channels for {ctx.c_in[0]} input channels")
        return Resolved(list(args), c_out, ctx.number)


@dataclass(frozen=True)
class DetectionHead(YamlRule):
    """``[nc, anchors, *rest]`` -> ``Head(nc, anchors, *rest, ch=[c_in per input])``.

    ``anchors`` may be an int (anchors per level), expanded to placeholder lists as YOLOv5 does.
    ``inputs_per_level``: heads reading several inputs per anchor level (IAuxDetect: lead + auxiliary).
    """

    signature: str = "[nc, anchors]"
    inputs_per_level: int = 1
    without_anchors: str | None = None  # registered head to build for ``[nc]`` alone (no anchors)

    def resolve(self, args: list[Any], ctx: LayerContext) -> Resolved:
        if len(args) == 1 and self.without_anchors:
            from yolo_attn.nn.registry import lookup  # deferred: the registry imports this module

            spec = lookup(self.without_anchors)
            resolved = spec.rule.resolve(args, ctx)  # that head's rule may pick another class (end2end)
            return resolved if resolved.block else replace(resolved, block=spec.cls)
        if len(args) < 2:
            raise ValueError(f"expects [nc, anchors], got {args!r}")
        built = list(args)
        levels, uneven = divmod(len(ctx.c_in), self.inputs_per_level)
        if isinstance(built[1], int):
            if not _is_count(built[1]) or built[1] > MAX_ANCHORS_PER_LEVEL:
                raise ValueError(f"anchors per level must be an int in 1..{MAX_ANCHORS_PER_LEVEL:,}, got {built[1]!r}")
            built[1] = [list(range(built[1] * 2))] * levels
        if not isinstance(built[1], list) or uneven or len(built[1]) != levels:
            anchor_levels = len(built[1]) if isinstance(built[1], list) else built[1]
            raise ValueError(
                f"has {anchor_levels!r} anchor levels but {len(ctx.c_in)} inputs "
                f"({self.inputs_per_level} per anchor level expected)"
            )
        built.append(list(ctx.c_in))
        return Resolved(built, ctx.c_in[0], ctx.number)


@dataclass(frozen=True)
class Keywords(YamlRule):
    """A block whose constructor differs from the order its YAML args are written in (the attention blocks:
    ``Block(channels, rd_ratio=..., ..., *, paper_arg=...)`` against ``[c2, reduction, ...]`` in the posts and
    YOLOAir configs). ``rule`` resolves the line into values in the YAML's order, ``names`` names each value
    (``None``: a value ``rule`` has checked and the constructor does not take, such as a repeated ``c2``) and
    ``convert`` maps the named values onto the constructor's parameters (``reduction`` 16 -> ``rd_ratio``
    1/16). The first name is passed positionally, the others by keyword; the YAML signature is ``rule``'s."""

    rule: YamlRule
    names: tuple[str | None, ...]
    convert: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    @property
    def signature(self) -> str:  # type: ignore[override]  # the YAML args are the inner rule's
        return self.rule.signature

    def bind(self, values: Sequence[Any]) -> tuple[list[Any], dict[str, Any]]:
        """Values in the YAML's order -> (positional, keyword) constructor arguments."""
        if len(values) > len(self.names):
            raise ValueError(f"has too many args for its YAML signature {self.signature}")
        # strict=False: trailing YAML args may be left out (the constructor's defaults apply)
        named = {name: value for name, value in zip(self.names, values, strict=False) if name is not None}
        if self.convert is not None:
            named = self.convert(named)
        first = self.names[0]
        return ([named.pop(first)] if first in named else []), named

    def resolve(self, args: list[Any], ctx: LayerContext) -> Resolved:
        resolved = self.rule.resolve(args, ctx)
        positional, keywords = self.bind(resolved.args)
        return Resolved(positional, resolved.c_out, resolved.number, resolved.block, keywords)

    def args_for_channels(self, args: list[Any], channels: int, width_multiple: float = 1.0) -> list[Any]:
        return self.rule.args_for_channels(args, channels, width_multiple)


PASS_THROUGH = PassThrough()
CONV = ConvLike()
CSP = ConvLike(repeat_inside=True, signature="[c2, *args] (number -> internal repeats)")
PREPEND_INPUT = PrependInput()
CONCAT = SumInputs()
DETECT = DetectionHead()
