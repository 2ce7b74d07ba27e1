"""The zoo's own checks on one block, as a report card (``yolo-attn check-block``, ``yolo-attn blocks --check``).

The block goes where ``yolo-attn ablate`` puts it by default, after the last backbone layer of yolov5n and of
yolo11n, with its example args fitted to the layer (or the args given). Then, on its own, at the feature map it
gets there for a 640 image: forward and backward shapes (output channels as its YAML line implies, gradients
reaching the input and every parameter, as DistributedDataParallel needs), parameters and GFLOPs
(:func:`~yolo_attn.nn.flops.count_gflops`, matrix products counted), a build and forward on the ``meta`` device (what
the resource guard counts before allocating), channels-last, ``fuse``, a state-dict round trip, pickling,
ONNX export with dynamic shapes against onnxruntime at a second size and batch, two seeded forward/backward passes
bit-identical on the CPU, and the CPU latency. Each check is one line; the card fails if any check fails.
"""

from __future__ import annotations

import copy
import io
import math
import pickle
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from yolo_attn.engine.ablation import base_text
from yolo_attn.engine.exporter import DEFAULT_OPSET, require
from yolo_attn.errors import UserError
from yolo_attn.nn.builder import STRIDE_PROBE_SIZE, build_model, parse_layers
from yolo_attn.nn.catalog import is_attention
from yolo_attn.nn.flops import count_gflops
from yolo_attn.nn.model import DetectionModel
from yolo_attn.nn.registry import BlockSpec, all_blocks, lookup
from yolo_attn.nn.resource_guard import ResourceGuard
from yolo_attn.nn.rules import LayerContext
from yolo_attn.nn.summary import count_params
from yolo_attn.nn.yaml_edit import default_block_args, insert_block
from yolo_attn.plugins import load_plugin, origin_of
from yolo_attn.utils.torch_utils import forward_latency_ms

BASES = ("yolov5n.yaml", "yolo11n.yaml")  # the block goes after each one's last backbone layer
IMAGE_SIZE = 640
ONNX_SECOND_INPUT = (2, 16, 24)  # batch, height, width of the second onnxruntime run (dynamic axes)
TOLERANCE = 1e-4  # relative to the output's largest magnitude


@dataclass(frozen=True)
class Check:
    """One line of the card: ``status`` is ``pass``, ``fail`` or ``skip``."""

    name: str
    status: str
    detail: str


@dataclass(frozen=True)
class ReportCard:
    """Every check of one block; ``origin``: "built-in" or the plugin it came from."""

    block: str
    origin: str
    signature: str
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(check.status != "fail" for check in self.checks)

    def lines(self) -> list[str]:
        failed = sum(check.status == "fail" for check in self.checks)
        verdict = "all checks pass" if self.ok else f"{failed} of {len(self.checks)} checks fail"
        head = f"{self.block}, {self.origin}, YAML args {self.signature}: {verdict}"
        return [head, *(f"  {c.status.upper():4}  {c.name:<13} {c.detail}" for c in self.checks)]

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


@dataclass(frozen=True)
class Placement:
    """The block's layer in a base model: its YAML args, input channels, the model's ``width_multiple`` (and
    ``max_channels``) and the feature map's size for a 640 px image."""

    args: list[Any]
    c_in: int
    scales: dict[str, float]
    size: tuple[int, int]


class CheckFailed(AssertionError):
    """A check's finding about the block (the message is the card's line)."""


def one_line(error: BaseException) -> str:
    """An exception as one short line: its type (unless it is a finding or a user error) and the first sentence of
    its message's first line."""
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    end = message.find(". ", 80)
    message = message[:end + 1] if end > 0 else message
    message = message if len(message) <= 240 else message[:237] + "..."
    return message if isinstance(error, (CheckFailed, UserError)) else f"{type(error).__name__}: {message}"


def resolve_block(reference: str) -> str:
    """``FILE.py:Class`` (the plugin is loaded) or a registered name -> the block's registered name."""
    path, _, class_name = reference.rpartition(":")
    if not path.endswith(".py"):
        if reference.endswith(".py"):
            raise UserError(f"{reference}: name the class too, FILE.py:Class")
        try:
            return lookup(reference).name
        except KeyError as e:
            raise UserError(e.args[0]) from None
    plugin = load_plugin(path)
    names = [spec.name for spec in all_blocks()
             if spec.cls.__module__ == plugin.module and spec.cls.__name__ == class_name]
    if not names:
        raise UserError(f"{path}: defines no nn.Module class {class_name!r} (its blocks: {', '.join(plugin.blocks)})")
    return names[0]


def _run(name: str, check: Callable[[], str]) -> Check:
    """``check()``'s line as a pass, any exception as a fail (one line)."""
    try:
        return Check(name, "pass", check())
    except Exception as e:  # noqa: BLE001 - whatever the block does wrong is the check's finding
        return Check(name, "fail", one_line(e))


def _parse_args(args: str | list[Any]) -> list[Any]:
    parsed = yaml.safe_load(args) if isinstance(args, str) else args
    if not isinstance(parsed, list):
        raise UserError(f"--args {args!r}: give a YAML list such as [256]")
    return parsed


def place(block: str, base: str, args: str | list[Any] | None) -> tuple[Check, Placement | None]:
    """Build ``base`` with ``block`` after its last backbone layer; the check and where the block sits (None when
    even its args could not be worked out)."""
    text = base_text(base)
    base_yaml = {**yaml.safe_load(text), "yaml_file": base}
    after, name = len(base_yaml["backbone"]) - 1, Path(base).stem
    try:
        base_model = build_model(base_yaml)
        block_args = _parse_args(args) if args is not None else default_block_args(base_yaml, after, block)
    except Exception as e:  # noqa: BLE001 - reported on the card
        return Check(name, "fail", one_line(e)), None
    records = base_model.layer_records
    record, gains = records[after], base_model.yaml
    assert record.out_shape is not None  # the layer before a block is a feature map
    stride = STRIDE_PROBE_SIZE // record.out_shape[-1]
    scales = {"width_multiple": float(gains.get("width_multiple", 1.0))}
    scales.update({"max_channels": float(gains["max_channels"])} if "max_channels" in gains else {})
    placement = Placement(block_args, record.out_shape[1], scales, (IMAGE_SIZE // stride, IMAGE_SIZE // stride))
    try:
        model = build_model({**yaml.safe_load(insert_block(text, after, block, block_args)), "yaml_file": base})
    except Exception as e:  # noqa: BLE001 - reported on the card
        return Check(name, "fail", one_line(e)), placement
    params, base_params = count_params(model), count_params(base_model)
    gflops, base_gflops = count_gflops(model, IMAGE_SIZE), count_gflops(base_model, IMAGE_SIZE)
    detail = (f"after layer {after} as {block_args}: {params:,} parameters ({params - base_params:+,}), "
              f"{gflops:.2f} GFLOPs ({gflops - base_gflops:+.4f}) at {IMAGE_SIZE}")
    return Check(name, "pass", detail), placement


def build_alone(block: str, placement: Placement) -> nn.Module:
    """The block as its layer line builds it in the base model, on its own (fresh weights each call)."""
    d = {"nc": 80, **placement.scales, "backbone": [[-1, 1, block, placement.args]], "head": []}
    layers, _, _ = parse_layers(d, placement.c_in, ResourceGuard(None))
    return layers[0]


def implied_channels(spec: BlockSpec, placement: Placement) -> int:
    """The output channels the block's YAML line implies (its rule's answer, which the next layer is built for)."""
    ctx = LayerContext(index=0, c_in=(placement.c_in,), number=1, width_multiple=placement.scales["width_multiple"],
                       channel_multiple=8, nc=80, num_outputs=255,
                       max_channels=placement.scales.get("max_channels", math.inf))
    return spec.rule.resolve(list(placement.args), ctx).c_out


def _agree(expected: torch.Tensor, got: torch.Tensor, what: str) -> float:
    """The largest difference of ``got`` from ``expected`` relative to its largest magnitude; CheckFailed over
    :data:`TOLERANCE`."""
    got = torch.as_tensor(got)
    if tuple(got.shape) != tuple(expected.shape):
        raise CheckFailed(f"{what}: shape {tuple(got.shape)}, expected {tuple(expected.shape)}")
    error = float((got - expected).abs().max() / expected.abs().max().clamp_min(1e-12))
    if not error <= TOLERANCE:
        raise CheckFailed(f"{what}: outputs differ by {error:.2e} of their largest magnitude")
    return error


def _randomized(block: nn.Module) -> nn.Module:
    """``block`` in eval mode with non-trivial BatchNorm statistics (so that folding them is exercised)."""
    generator = torch.Generator().manual_seed(0)
    for m in block.modules():
        mean, var = getattr(m, "running_mean", None), getattr(m, "running_var", None)
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and mean is not None and var is not None:
            mean.copy_(torch.rand(mean.shape, generator=generator) * 0.4 - 0.2)
            var.copy_(torch.rand(var.shape, generator=generator) * 1.5 + 0.5)
    return block.eval()


def _input(placement: Placement, batch: int = 2, size: tuple[int, int] | None = None) -> torch.Tensor:
    h, w = size or placement.size
    return torch.randn(batch, placement.c_in, h, w, generator=torch.Generator().manual_seed(1))


def check_shapes(block: nn.Module, x: torch.Tensor, channels: int) -> str:
    """Train-mode forward and backward: the implied output channels, gradients on the input and every parameter."""
    x = x.clone().requires_grad_(True)
    y = block.train()(x)
    if not isinstance(y, torch.Tensor) or y.dim() != 4 or y.shape[:2] != (x.shape[0], channels):
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise CheckFailed(f"output {shape} for input {tuple(x.shape)}: its YAML line implies {channels} channels")
    y.float().square().mean().backward()
    unused = [name for name, p in block.named_parameters() if p.requires_grad and p.grad is None]
    if x.grad is None or x.grad.shape != x.shape:
        raise CheckFailed("no gradient reaches the input")
    if unused:
        raise CheckFailed(f"{len(unused)} parameters get no gradient (DDP refuses them): {', '.join(unused[:4])}")
    return f"{tuple(x.shape)} -> {tuple(y.shape)}; gradients reach the input and every parameter"


def check_meta(build: Callable[[], nn.Module], x: torch.Tensor, expected: torch.Size | None) -> str:
    """Built and run on the ``meta`` device (shapes only), as the resource guard does before allocating; the output
    shape must be the CPU's (``expected``, None when the CPU forward fails)."""
    with torch.device("meta"):
        block = build()
    y = block.train()(x.to("meta"))
    if expected is not None and y.shape != expected:
        raise CheckFailed(f"output {tuple(y.shape)} on meta, {tuple(expected)} on the CPU")
    return f"builds and runs on meta: {sum(p.numel() for p in block.parameters()):,} parameters counted unallocated"


@torch.no_grad()
def check_channels_last(block: nn.Module, x: torch.Tensor) -> str:
    expected = block(x)
    twin = copy.deepcopy(block).to(memory_format=torch.channels_last)
    error = _agree(expected, twin(x.to(memory_format=torch.channels_last)), "channels-last")
    return f"NHWC weights and input agree (relative difference {error:.1e})"


@torch.no_grad()
def check_fuse(block: nn.Module, x: torch.Tensor) -> str:
    """``DetectionModel.fuse`` on a model of this one layer keeps the eval output."""
    expected = block(x)
    model = DetectionModel(nn.Sequential(copy.deepcopy(block)), [], {"nc": 80}).eval()
    fusable = sum(callable(getattr(m, "fuse", None)) for m in model.model.modules())
    error = _agree(expected, model.fuse()(x), "fuse()")
    return f"{fusable} modules fold themselves; output kept (relative difference {error:.1e})"


@torch.no_grad()
def check_state_dict(block: nn.Module, fresh: nn.Module, x: torch.Tensor) -> str:
    """Saved with ``torch.save``, read back with ``weights_only=True`` into a fresh instance, strictly."""
    buffer = io.BytesIO()
    torch.save(block.state_dict(), buffer)
    buffer.seek(0)
    fresh.load_state_dict(torch.load(buffer, weights_only=True), strict=True)
    _agree(block(x), fresh.eval()(x), "state-dict round trip")
    return f"{len(block.state_dict())} tensors round-trip strictly, same output"


@torch.no_grad()
def check_pickle(block: nn.Module, x: torch.Tensor) -> str:
    """Pickled and unpickled (what spawning DDP workers and ``copy.deepcopy`` of EMA weights rely on)."""
    data = pickle.dumps(block)
    _agree(block(x), pickle.loads(data)(x), "unpickled copy")
    return f"pickles ({len(data):,} bytes) and the copy gives the same output"


@torch.no_grad()
def check_onnx(block: nn.Module, placement: Placement) -> str:
    """Exported with dynamic batch, height and width at the 640 px feature map; onnxruntime must match PyTorch
    there and at :data:`ONNX_SECOND_INPUT` (a shape branch taken in Python is frozen into the graph by tracing)."""
    onnx, ort = require("onnx"), require("onnxruntime")
    x = _input(placement, batch=1)
    axes = {0: "batch", 2: "height", 3: "width"}
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notices
        path = Path(folder) / "block.onnx"
        torch.onnx.export(block, (x,), str(path), dynamo=False, opset_version=DEFAULT_OPSET, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": axes, "y": axes})
        onnx.checker.check_model(onnx.load(str(path)))
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        batch, h, w = ONNX_SECOND_INPUT
        for probe in (x, _input(placement, batch, (h, w))):
            _agree(block(probe), torch.from_numpy(session.run(None, {"x": probe.numpy()})[0]),
                   f"onnxruntime at {tuple(probe.shape)}")
    return f"opset {DEFAULT_OPSET}, dynamic axes: onnxruntime matches at {tuple(x.shape)} and {ONNX_SECOND_INPUT}"


def _forward_backward(block: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    torch.manual_seed(0)
    x = x.clone().requires_grad_(True)
    y = block.train()(x)
    y.float().square().mean().backward()
    return [y.detach(), x.grad, *(p.grad for p in block.parameters() if p.grad is not None)]


def check_determinism(block: nn.Module, x: torch.Tensor) -> str:
    """Two copies, the same seed: forward outputs and all gradients bit-identical on the CPU."""
    first, second = (_forward_backward(copy.deepcopy(block), x) for _ in range(2))
    if len(first) != len(second) or not all(torch.equal(a, b) for a, b in zip(first, second, strict=True)):
        raise CheckFailed("two seeded forward/backward passes differ")
    return f"two seeded forward/backward passes bit-identical ({len(first)} tensors)"


def check_cost(block: nn.Module, placement: Placement) -> str:
    h, w = placement.size
    gflops = count_gflops(block, (h, w), placement.c_in)
    return f"{count_params(block):,} parameters, {gflops:.4f} GFLOPs on its {(placement.c_in, h, w)} input " \
           "(matrix products counted)"


def check_latency(block: nn.Module, placement: Placement, repeats: int) -> Check:
    if repeats <= 0:
        return Check("cpu latency", "skip", "not timed (repeats 0)")
    x = _input(placement, batch=1)
    return _run("cpu latency", lambda: f"{forward_latency_ms(block, x, repeats):.2f} ms on {tuple(x.shape)} "
                f"(a 640 px image; fastest of {repeats}, {torch.get_num_threads()} threads)")


def check_block(block: str, args: str | list[Any] | None = None, repeats: int = 10) -> ReportCard:
    """The report card of the registered ``block`` (``args``: its YAML args in both base models; default: its
    example args fitted to each layer). ``repeats``: timed forward passes (0: no latency)."""
    spec = lookup(block)
    origin = origin_of(spec.cls)
    checks, placement = [], None
    for base in BASES:
        check, where = place(block, base, args)
        checks.append(check)
        placement = placement or where
    if placement is not None:
        checks.extend(_alone_checks(spec, placement, repeats))
    source = f"plugin {origin.short()}" if origin else "built-in"
    return ReportCard(spec.name, source, spec.rule.signature, tuple(checks))


def _alone_checks(spec: BlockSpec, placement: Placement, repeats: int) -> list[Check]:
    """The checks of the block on its own, built as in the first base model."""
    try:
        block = build_alone(spec.name, placement)
        channels = implied_channels(spec, placement)
    except Exception as e:  # noqa: BLE001 - reported on the card
        return [Check("build alone", "fail", one_line(e))]
    x = _input(placement)
    initial = copy.deepcopy(block)
    checks = [_run("shapes", lambda: check_shapes(copy.deepcopy(initial), x, channels)),
              _run("cost", lambda: check_cost(initial, placement))]
    expected = _run_quietly(initial, x)
    checks.append(_run("meta", lambda: check_meta(lambda: build_alone(spec.name, placement), x, expected)))
    evaluated = _randomized(copy.deepcopy(initial))
    checks += [
        _run("channels-last", lambda: check_channels_last(evaluated, x)),
        _run("fuse", lambda: check_fuse(evaluated, x)),
        _run("state dict", lambda: check_state_dict(evaluated, build_alone(spec.name, placement), x)),
        _run("pickle", lambda: check_pickle(evaluated, x)),
        _run("onnx", lambda: check_onnx(evaluated, placement)),
        _run("determinism", lambda: check_determinism(initial, x)),
        check_latency(evaluated, placement, repeats),
    ]
    return checks


@torch.no_grad()
def _run_quietly(block: nn.Module, x: torch.Tensor) -> torch.Size | None:
    """The train-mode output shape on the CPU (None when the forward fails: the shapes check says why)."""
    try:
        return copy.deepcopy(block).train()(x).shape
    except Exception:  # noqa: BLE001 - reported by check_shapes
        return None


def zoo_blocks() -> list[str]:
    """The blocks ``blocks --check`` checks: every attention block and every plugin block."""
    return [spec.name for spec in all_blocks() if is_attention(spec) or origin_of(spec.cls) is not None]
