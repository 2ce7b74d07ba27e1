"""Plugins: blocks from the user's own Python file or module, registered in the one block registry.

A plugin is named by the user only: ``--plugin FILE.py`` or ``--plugin package.module`` on the command line,
``$YOLO_ATTN_PLUGINS`` (entries separated by ``os.pathsep``), the ``yolo_attn.plugins`` entry-point group of an
installed distribution, or :func:`load_plugin` from Python. A model YAML, a data YAML or a checkpoint never
names one that gets imported: a checkpoint only records which plugin provided each of its blocks, and loading it
without that plugin stops with the flag to pass.

A plugin may be plain PyTorch, pasted from a paper's repository or a blog post: every ``nn.Module`` class defined in
it (not imported into it) becomes a block under its class name, with a YAML rule read from its constructor, as
the posts register blocks in YOLOv5's ``parse_model``: the first argument is the input channels; a second one
named as output channels (``c2``, ``out_channels``, ...) makes it convolution-like (``[c2, *args]``), no second
required argument makes it channel-keeping (``[c2=c1, *args]``), a constructor without required arguments takes
its args as written. Anything else is ambiguous and the block's first use says which one line settles it. A
plugin may declare, at module level and without importing yolo-attn:

* ``YOLO_ATTN_RULES = {"ClassName": "conv", ...}``: a rule by name (:data:`RULES`) or a
  :class:`~yolo_attn.nn.rules.YamlRule`;
* ``YOLO_ATTN_OVERRIDES = ["ClassName", ...]``: these classes replace the built-in blocks of the same name (a
  clash is refused otherwise);
* ``YOLO_ATTN_GATES = {"ClassName": {"submodule.path": "spatial" | "channel"}}``: the submodules whose outputs are
  the block's attention gates, drawn by ``yolo-attn cam`` (a block may instead apply
  :class:`~yolo_attn.nn.attention._gates.Gate` itself, or set the ``attention_gates`` class attribute).

A plugin that imports yolo-attn may also use :func:`~yolo_attn.nn.registry.register` (with ``override=True`` to
replace a built-in block). Each loaded plugin is kept with its sha256 (of its file, or of its module's source file).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import logging
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import nn

from yolo_attn.errors import UserError
from yolo_attn.nn.registry import BlockSpec, all_blocks, ensure_loaded, lookup, register
from yolo_attn.nn.rules import (
    CONV,
    CSP,
    PASS_THROUGH,
    PREPEND_INPUT,
    LayerContext,
    Resolved,
    SameWidth,
    YamlRule,
)

LOGGER = logging.getLogger(__name__)

ENV_VARIABLE = "YOLO_ATTN_PLUGINS"
ENTRY_POINT_GROUP = "yolo_attn.plugins"
RULES_DECLARATION = "YOLO_ATTN_RULES"
OVERRIDES_DECLARATION = "YOLO_ATTN_OVERRIDES"
GATES_DECLARATION = "YOLO_ATTN_GATES"
BUILTIN_PACKAGES = frozenset({"yolo_attn", "torch", "torchvision"})  # where the built-in blocks' classes live

RULES: dict[str, YamlRule] = {  # the rules a plugin declares by name
    "conv": CONV,  # [c2, *args] -> Block(c1, c2, *args), output c2 (width-scaled): YOLOv5's Conv branch
    "csp": CSP,  # the same with the YAML number passed as the block's internal repeat count (C3)
    "same_width": SameWidth(),  # [c2=c1, *args] -> Block(c1, c2, *args), c2 must equal c1 (YOLOAir's CBAM)
    "keep_channels": SameWidth(pass_width=False),  # [c2=c1, *args] -> Block(c1, *args) (YOLOAir's SE)
    "prepend_input": PREPEND_INPUT,  # [*args] -> Block(c1, *args), channels kept
    "pass_through": PASS_THROUGH,  # [*args] -> Block(*args), channels kept (YOLOv5's fallback)
}
OUTPUT_CHANNEL_NAMES = frozenset({
    "c2", "c_2", "c_out", "cout", "oc", "ouc", "outc", "oup", "out_c", "out_ch", "out_chs", "out_channel",
    "out_channels", "out_planes", "outplanes", "out_dim", "dim_out", "output_channels", "output_dim",
})
GATE_KINDS = ("spatial", "channel")


class PluginError(UserError):
    """A plugin that cannot be loaded or declares something impossible; the message names the plugin."""


@dataclass(frozen=True)
class Plugin:
    """A loaded plugin: ``name`` as ``--plugin`` takes it (a file's absolute path, or a dotted module), the sha256
    of its source, its module's name and the rule of each block it provided (``block name -> how it was chosen``)."""

    name: str
    sha256: str
    module: str
    blocks: Mapping[str, str] = field(default_factory=dict)

    def short(self) -> str:
        return f"{self.name} (sha256 {self.sha256[:12]})"


_LOADED: dict[str, Plugin] = {}  # plugin name -> plugin
_ORIGINS: dict[type, Plugin] = {}  # block class -> the plugin that provided it


def sha256_of(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_plugin(spec: str) -> Plugin:
    """Import the plugin ``spec`` (a ``.py`` file or a dotted module name) and register its blocks. Loading the
    same plugin again returns it; a plugin that fails to import or declares a clash raises :class:`PluginError`."""
    ensure_loaded()  # the built-in blocks first, so that a clash with one is seen
    spec = spec.strip()
    if _names_file(spec):
        path = Path(spec).expanduser().resolve()
        if not path.is_file():
            raise PluginError(f"plugin {spec}: no such file")
        if str(path) in _LOADED:
            return _LOADED[str(path)]
        module = _import_file(path)
        return _register_module(module, str(path), sha256_of(path))
    if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", spec):
        raise PluginError(f"plugin {spec!r}: not a .py file or a dotted module name (package.module)")
    if spec in _LOADED:
        return _LOADED[spec]
    module = _import_module(spec)
    source = getattr(module, "__file__", None)
    digest = sha256_of(source) if source and Path(source).is_file() else hashlib.sha256(spec.encode()).hexdigest()
    return _register_module(module, spec, digest)


def _names_file(spec: str) -> bool:
    return spec.endswith(".py") or os.sep in spec or "/" in spec or Path(spec).is_file()


def _import_file(path: Path) -> ModuleType:
    """Import ``path`` under a module name of its own (kept in ``sys.modules``, so that its blocks pickle)."""
    stem = re.sub(r"\W", "_", path.stem)
    module_name = f"yolo_attn_plugin_{stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise PluginError(f"plugin {path}: cannot be imported as a Python file")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = module
    try:
        loader_spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - any failure of the user's code is reported in one line
        del sys.modules[module_name]
        raise PluginError(f"plugin {path}: {type(e).__name__} while importing it: {e}") from e
    return module


def _import_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name and name.startswith(e.name):
            raise PluginError(f"plugin {name}: no module named {e.name!r} (a file is named by its path, "
                              "ending in .py)") from None
        raise PluginError(f"plugin {name}: {type(e).__name__} while importing it: {e}") from e
    except Exception as e:  # noqa: BLE001 - any failure of the user's code is reported in one line
        raise PluginError(f"plugin {name}: {type(e).__name__} while importing it: {e}") from e


def _declaration(module: ModuleType, name: str, kind: type | tuple[type, ...], plugin: str) -> Any:
    value = getattr(module, name, None)
    if value is not None and not isinstance(value, kind):
        raise PluginError(f"plugin {plugin}: {name} must be a {getattr(kind, '__name__', 'list')}, "
                          f"got {type(value).__name__}")
    return value


def _register_module(module: ModuleType, name: str, digest: str) -> Plugin:
    """Register every block class ``module`` defines; the plugin with the rule chosen for each."""
    rules = _declaration(module, RULES_DECLARATION, dict, name) or {}
    overrides = set(_declaration(module, OVERRIDES_DECLARATION, (list, tuple, set, frozenset), name) or ())
    gates = _declaration(module, GATES_DECLARATION, dict, name) or {}
    classes = {obj.__name__: obj for obj in vars(module).values()
               if isinstance(obj, type) and issubclass(obj, nn.Module) and obj.__module__ == module.__name__}
    for declared in (*rules, *overrides, *gates):
        if declared not in classes:
            raise PluginError(f"plugin {name}: declares {declared!r}, which it does not define as an nn.Module class")
    decorated = {spec.cls: spec for spec in all_blocks() if spec.cls.__module__ == module.__name__}
    chosen = {class_name: _rule_for(cls, rules.get(class_name), name) for class_name, cls in classes.items()
              if cls not in decorated}
    for class_name in chosen:  # every clash refused before anything is registered
        _check_clash(class_name, classes[class_name], class_name in overrides, name)
    blocks: dict[str, str] = {}
    for class_name, cls in classes.items():
        if cls in decorated:
            blocks[decorated[cls].name] = f"registered with its rule {decorated[cls].rule.signature}"
        else:
            register(rule=chosen[class_name][0], override=class_name in overrides)(cls)
            blocks[class_name] = chosen[class_name][1]
        _declare_gates(cls, gates.get(class_name), name)
        if not isinstance(getattr(cls, "yaml_example", None), str):
            setattr(cls, "yaml_example", f"[-1, 1, {class_name}, {_example_args(lookup(class_name).rule)}]")  # noqa: B010
    plugin = Plugin(name, digest, module.__name__, blocks)
    _LOADED[name] = plugin
    for spec in all_blocks():
        if spec.cls.__module__ == module.__name__:
            _ORIGINS[spec.cls] = plugin
    LOGGER.info(f"plugin {plugin.short()}: {', '.join(blocks) or 'no blocks'}")
    return plugin


def _check_clash(block: str, cls: type, override: bool, plugin: str) -> None:
    try:
        previous = lookup(block)
    except KeyError:
        return
    if previous.cls is cls or override:
        return
    owner = origin_of(previous.cls)
    where = f"the block {block} of plugin {owner.name}" if owner else f"the built-in block {block}"
    raise PluginError(f"plugin {plugin}: class {block} clashes with {where} ({previous.cls.__module__}); rename it, "
                      f"or add {OVERRIDES_DECLARATION} = [{block!r}] to the plugin to replace it")


def _declare_gates(cls: type, gates: Any, plugin: str) -> None:
    """``YOLO_ATTN_GATES[cls]`` as the class's ``attention_gates`` (submodule path -> gate kind)."""
    if gates is None:
        return
    if not isinstance(gates, dict) or not all(kind in GATE_KINDS for kind in gates.values()):
        raise PluginError(f"plugin {plugin}: {GATES_DECLARATION}[{cls.__name__!r}] must map submodule paths to "
                          f"one of {GATE_KINDS}, got {gates!r}")
    setattr(cls, "attention_gates", dict(gates))  # noqa: B010 - the class is the user's, not typed here


def _example_args(rule: YamlRule) -> list[int]:
    """Example args for a rule: the width for a rule whose YAML args start with it (fitted to the layer by
    ``args_for_channels`` wherever the example is used), none otherwise."""
    return [256] if rule.signature.startswith("[c2") else []


@dataclass(frozen=True)
class UndecidedRule(YamlRule):
    """The rule of a plugin block whose constructor does not say how its YAML args map onto it: building it
    raises the one-line declaration that settles it."""

    block: str = ""
    constructor: str = ""
    argument: str = ""
    signature: str = "[?]"

    def resolve(self, args: list[Any], ctx: LayerContext) -> Resolved:
        raise ValueError(
            f"{self.block}{self.constructor}: cannot tell whether {self.argument!r} is its output channels; declare "
            f"its rule in the plugin, e.g. {RULES_DECLARATION} = {{{self.block!r}: 'conv'}} "
            f"(rules: {', '.join(RULES)}; see docs/plugins.md)"
        )


def _parameters(cls: type) -> list[inspect.Parameter] | None:
    """The constructor's positional parameters (``self`` excluded); None when it has no readable signature."""
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):
        return None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p for p in signature.parameters.values() if p.kind in kinds]


def _listed(parameters: list[inspect.Parameter]) -> str:
    return ", ".join(p.name if p.default is p.empty else f"{p.name}={p.default!r}" for p in parameters)


# For each rule of RULES: the YAML args it puts first, and how many leading constructor arguments it fills itself.
_RULE_LAYOUT: dict[str, tuple[tuple[str, ...], int]] = {
    "conv": (("c2",), 2), "csp": (("c2",), 3), "same_width": (("c2=c1",), 2), "keep_channels": (("c2=c1",), 1),
    "prepend_input": ((), 1), "pass_through": ((), 0),
}


def named_rule(kind: str, parameters: list[inspect.Parameter] | None) -> YamlRule:
    """The rule ``RULES[kind]`` with the YAML signature spelled from the constructor's ``parameters``."""
    leading, filled = _RULE_LAYOUT[kind]
    if parameters is None:
        return RULES[kind]
    shown = [*leading, *filter(None, [_listed(parameters[filled:])])]
    rule: Any = RULES[kind]  # each is a dataclass with a ``signature`` field
    return dataclasses.replace(rule, signature=f"[{', '.join(shown)}]")


def infer_rule(cls: type) -> tuple[YamlRule, str]:
    """The YAML rule read from ``cls``'s constructor, as YOLOv5's ``parse_model`` posts register blocks, and how it
    was chosen (see the module docstring)."""
    parameters = _parameters(cls)
    constructor = f"({_listed(parameters or [])})"
    if parameters is None or not any(p.default is p.empty for p in parameters):
        kind = "pass_through"
    elif len(parameters) > 1 and parameters[1].name in OUTPUT_CHANNEL_NAMES:
        kind = "conv"
    elif len(parameters) == 1 or parameters[1].default is not parameters[1].empty:
        kind = "keep_channels"
    else:
        return UndecidedRule(cls.__name__, constructor, parameters[1].name), f"undecided: {constructor} is ambiguous"
    return named_rule(kind, parameters), f"{kind}, inferred from {constructor}"


def _rule_for(cls: type, declared: Any, plugin: str) -> tuple[YamlRule, str]:
    """The declared rule (a name of :data:`RULES` or a YamlRule), else the inferred one."""
    if declared is None:
        return infer_rule(cls)
    if isinstance(declared, YamlRule):
        return declared, f"declared {type(declared).__name__} {declared.signature}"
    if isinstance(declared, str) and declared in RULES:
        return named_rule(declared, _parameters(cls)), f"{declared}, declared in {RULES_DECLARATION}"
    raise PluginError(f"plugin {plugin}: {RULES_DECLARATION}[{cls.__name__!r}] = {declared!r}: give one of "
                      f"{', '.join(RULES)} or a yolo_attn.nn.rules.YamlRule")


def origin_of(cls: type) -> Plugin | None:
    """The plugin that provided block class ``cls``; None for a built-in block. A class registered from the
    user's own code without :func:`load_plugin` counts as a plugin named after its module (or file)."""
    if cls in _ORIGINS:
        return _ORIGINS[cls]
    module = sys.modules.get(cls.__module__)
    if cls.__module__.split(".")[0] in BUILTIN_PACKAGES or module is None:
        return None
    source = Path(getattr(module, "__file__", None) or "")
    has_source = source.name != "" and source.is_file()
    name = str(source.resolve()) if has_source and cls.__module__ == "__main__" else cls.__module__
    digest = sha256_of(source) if has_source else hashlib.sha256(cls.__module__.encode()).hexdigest()
    return Plugin(name, digest, cls.__module__)


def loaded_plugins() -> list[Plugin]:
    """The plugins loaded in this process, in loading order."""
    return list(_LOADED.values())


def requested_plugins(specs: Iterable[str] = ()) -> list[str]:
    """The plugins to load: ``$YOLO_ATTN_PLUGINS`` (``os.pathsep``-separated), then ``specs`` (``--plugin``)."""
    from_env = [s for s in os.environ.get(ENV_VARIABLE, "").split(os.pathsep) if s.strip()]
    return [*from_env, *specs]


def load_plugins(specs: Iterable[str] = (), entry_points: bool = True) -> list[Plugin]:
    """Load every plugin the user named: the ``yolo_attn.plugins`` entry points of installed distributions
    (``entry_points``), ``$YOLO_ATTN_PLUGINS`` and ``specs``; returns them in that order."""
    plugins = []
    if entry_points:
        for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            plugins.append(load_plugin(entry.module))
    plugins.extend(load_plugin(spec) for spec in requested_plugins(specs))
    return plugins


def _layer_classes(layer: nn.Module) -> list[type]:
    """The classes a model layer was built from: its own, or its copies' for a stack (``number`` > 1)."""
    return [type(layer), *(type(m) for m in layer)] if type(layer) is nn.Sequential else [type(layer)]


def block_provenance(model: nn.Module) -> dict[str, dict[str, str]]:
    """``{block name: {"plugin": name, "sha256": digest}}`` for every layer of ``model`` (a ``DetectionModel``)
    built from a plugin's class: what a checkpoint records."""
    provenance = {}
    for layer in getattr(model, "model", ()):
        origin = next(filter(None, map(origin_of, _layer_classes(layer))), None)
        if origin is not None:
            provenance[str(layer.type)] = {"plugin": origin.name, "sha256": origin.sha256}
    return provenance


def check_provenance(recorded: Mapping[str, Mapping[str, str]], where: str) -> None:
    """Refuse a checkpoint whose blocks came from plugins that are not loaded now (:class:`PluginError`: the block,
    the plugin and the flag); warn when a loaded plugin's source differs from the one it was saved with. Nothing
    ``recorded`` names is imported."""
    for block, record in recorded.items():
        plugin, digest = str(record.get("plugin")), str(record.get("sha256"))
        try:
            spec: BlockSpec | None = lookup(block)
        except KeyError:
            spec = None
        origin = origin_of(spec.cls) if spec is not None else None
        if origin is None:
            raise PluginError(f"{where}: block {block!r} comes from the plugin {plugin}, which is not loaded: "
                              f"pass --plugin {plugin} (or name it in ${ENV_VARIABLE})")
        if origin.sha256 != digest:
            LOGGER.warning(f"{where}: block {block!r} was saved with the plugin {plugin} (sha256 {digest[:12]}), "
                           f"now it comes from {origin.short()}: its code changed, the weights may not fit")


def plugin_block_lines(model: nn.Module) -> list[str]:
    """One line per plugin block of ``model``: its plugin and the rule chosen for it (``yolo-attn info``)."""
    lines = []
    for name in dict.fromkeys(str(layer.type) for layer in getattr(model, "model", ())):
        spec = lookup(name)
        origin = origin_of(spec.cls)
        if origin is not None:
            how = origin.blocks.get(name, f"registered with its rule {spec.rule.signature}")
            lines.append(f"plugin block {name}: YAML args {spec.rule.signature} ({how}), from {origin.short()}")
    return lines
