"""FLOPs of one forward pass, counted by our own rules, so the figure never moves with the torch version.

The reference figures users compare against (YOLOv5's and YOLOv7's ``model_info``, Ultralytics' ``get_flops``)
come from THOP ("PyTorch-OpCounter", the ``thop`` / ``ultralytics-thop`` packages): multiply-accumulates of
the leaf modules it has a rule for, plus (since ultralytics-thop 2.x) the matrix products a forward runs
functionally, doubled to FLOPs. We count the same things with our own formulas:

* modules, found by their class (a subclass counts as its base): convolutions and transposed convolutions
  (``out x c_in/groups x k``, bias not counted), batch/instance/layer/group norms (2 per element, 4 when
  affine), ``nn.Linear`` (``in_features`` per output), ``nn.Softmax`` (exp, add, divide per element),
  average pools (one add per pooled input, one divide per output), adaptive average pools (the same over
  their windows), ``nn.Upsample`` (0 for nearest, per-element constants for interpolation), PReLU;
  every other module (activations, max-pools, containers) costs nothing;
* functional products run outside such a module: ``matmul``/``@``/``bmm``, two-operand ``einsum``,
  ``F.linear``, ``scaled_dot_product_attention`` (``q k^T`` and ``attn v``), and ``F.conv*d`` (a block that
  convolves with its own weight tensor costs what ``nn.Conv2d`` would).

Why our own rules rather than ``torch.utils.flop_counter``: that counter works on ATen ops, after torch's
decompositions, and what it sees changes between releases. With torch 2.14 it decomposes
``native_batch_norm`` before its (custom) formula is consulted, so batch norm costs nothing and yolo12n read
7.47 GFLOPs instead of Ultralytics' 7.63; with 2.15 it did not. It also cannot tell an adaptive pool from a
``mean`` (the first costs in THOP, the second does not). Module hooks and ``__torch_function__`` are stable API.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

ModuleRule = Callable[[nn.Module, tuple, Any], int]
FunctionRule = Callable[[tuple, dict, Any], int]


def _conv_macs(out_volume: torch.Size, in_channels: int, weight: torch.Tensor, groups: int) -> int:
    return math.prod(out_volume) * (in_channels // groups) * math.prod(weight.shape[2:])


def _conv(m: nn.Module, x: tuple, y: torch.Tensor) -> int:
    assert isinstance(m, nn.modules.conv._ConvNd)
    spatial = len(m.weight.shape) - 2
    if m.transposed:  # a transpose scatters every input element into c_out/groups x k outputs
        return _conv_macs(x[0].shape, y.shape[-spatial - 1], m.weight, m.groups)
    return _conv_macs(y.shape, x[0].shape[-spatial - 1], m.weight, m.groups)


def _norm(m: nn.Module, x: tuple, y: torch.Tensor) -> int:
    affine = bool(getattr(m, "affine", False) or getattr(m, "elementwise_affine", False))
    return 2 * x[0].numel() * (2 if affine else 1)


def _softmax_macs(rows: int, width: int) -> int:
    return rows * (width + max(width - 1, 0) + width)  # exp, sum, divide


def _softmax(m: nn.Module, x: tuple, y: torch.Tensor) -> int:
    t = x[0]
    dim = -3 if isinstance(m, nn.Softmax2d) else getattr(m, "dim", None)
    if dim is None:
        dim = 0 if t.dim() in (0, 1, 3) else 1
    width = t.shape[dim] if t.dim() else 1
    return _softmax_macs(t.numel() // width if width else 0, width)


def _pooled_inputs(size: int, out: int, k: int, s: int, p: int, include_pad: bool) -> int:
    lower, upper = (-p, size + p) if include_pad else (0, size)
    return sum(max(min(i * s - p + k, upper) - max(i * s - p, lower), 0) for i in range(out))


def _avg_pool(m: nn.Module, x: tuple, y: torch.Tensor) -> int:
    dims = 3 if isinstance(m, nn.AvgPool3d) else 1 if isinstance(m, nn.AvgPool1d) else 2

    def per_dim(v: Any) -> tuple:
        return (v,) * dims if isinstance(v, int) else tuple(v)

    kernel, stride, padding = per_dim(m.kernel_size), per_dim(m.stride), per_dim(m.padding)
    windows = 1
    for size, out, k, s, p in zip(x[0].shape[-dims:], y.shape[-dims:], kernel, stride, padding, strict=True):
        windows *= _pooled_inputs(size, out, k, s, p, bool(m.count_include_pad))
    return math.prod(x[0].shape[:-dims]) * windows + y.numel()  # one add per pooled input, one divide per output


def _adaptive_avg_pool(m: nn.Module, x: tuple, y: torch.Tensor) -> int:
    pooled = 1
    for i, o in zip(x[0].shape, y.shape, strict=True):
        pooled *= o if i == o else sum(-(-(j + 1) * i // o) - j * i // o for j in range(o))
    return pooled + y.numel()


_UPSAMPLE_PER_ELEMENT = {"nearest": 0, "nearest-exact": 0, "linear": 5, "bilinear": 11, "bicubic": 259, "trilinear": 31}


def _upsample(m: nn.Module, x: tuple, y: torch.Tensor) -> int:
    return _UPSAMPLE_PER_ELEMENT.get(str(getattr(m, "mode", "nearest")), 0) * y.numel()


def _linear(m: nn.Module, x: tuple, y: torch.Tensor) -> int:
    assert isinstance(m, nn.Linear)  # the rule of nn.Linear
    return m.in_features * y.numel()


def _prelu(m: nn.Module, x: tuple, y: torch.Tensor) -> int:
    return 0 if m.training else x[0].numel()


def _free(m: nn.Module, x: tuple, y: Any) -> int:
    return 0


# First match along the module's MRO decides; a module with no rule costs nothing itself (its children count).
MODULE_RULES: dict[type, ModuleRule] = {
    nn.modules.conv._ConvNd: _conv,
    nn.modules.batchnorm._NormBase: _norm,
    nn.LayerNorm: _norm,
    nn.GroupNorm: _norm,
    nn.Softmax: _softmax,
    nn.Softmax2d: _softmax,
    nn.LogSoftmax: _softmax,
    nn.AvgPool1d: _avg_pool,
    nn.AvgPool2d: _avg_pool,
    nn.AvgPool3d: _avg_pool,
    nn.modules.pooling._AdaptiveAvgPoolNd: _adaptive_avg_pool,
    nn.Upsample: _upsample,
    nn.Linear: _linear,
    nn.PReLU: _prelu,
    nn.modules.pooling._MaxPoolNd: _free,
    nn.modules.pooling._AdaptiveMaxPoolNd: _free,
    nn.Identity: _free,
}


def _matmul(args: tuple, kwargs: dict, y: Any) -> int:
    return y.numel() * (args[0] if args else kwargs["input"]).shape[-1]


def _sdpa(args: tuple, kwargs: dict, y: Any) -> int:
    names = ("query", "key", "value")
    q, k, v = (*args, *(kwargs[n] for n in names[len(args):]))[:3]
    return y.numel() // v.shape[-1] * k.shape[-2] * (q.shape[-1] + v.shape[-1])


def _einsum(args: tuple, kwargs: dict, y: Any) -> int:
    equation, *operands = args
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = list(operands[0])
    if len(operands) != 2:
        return 0
    inputs, _, output = equation.replace(" ", "").partition("->")
    sizes: dict[str, int] = {}
    for subscripts, t in zip(inputs.split(","), operands, strict=True):
        if "..." in subscripts:
            return _matmul((operands[0],), {}, y)  # broadcast batch dims: count it as a batched product
        sizes.update({c: d for c, d in zip(subscripts, t.shape, strict=True) if d != 1})
    return math.prod(sizes.values())


def _functional_conv(args: tuple, kwargs: dict, y: Any) -> int:
    x = args[0]
    weight = args[1] if len(args) > 1 else kwargs["weight"]
    groups = args[6] if len(args) > 6 else kwargs.get("groups", 1)
    return _conv_macs(y.shape, x.shape[-(weight.dim() - 1)], weight, groups)


FUNCTION_RULES: dict[Callable, FunctionRule] = {
    torch.matmul: _matmul,
    torch.Tensor.matmul: _matmul,
    torch.Tensor.__matmul__: _matmul,
    torch.bmm: _matmul,
    torch.Tensor.bmm: _matmul,
    torch.einsum: _einsum,
    F.linear: _matmul,
    F.scaled_dot_product_attention: _sdpa,
    F.conv1d: _functional_conv,
    F.conv2d: _functional_conv,
    F.conv3d: _functional_conv,
}


def module_rule(module: nn.Module) -> ModuleRule | None:
    """The counting rule of ``module``'s class: the first class along its MRO that has one."""
    return next((MODULE_RULES[t] for t in type(module).__mro__ if t in MODULE_RULES), None)


class _FunctionalProducts(TorchFunctionMode):
    """Counts the products of :data:`FUNCTION_RULES` run while no counted module is running."""

    def __init__(self) -> None:
        super().__init__()
        self.macs = 0
        self.depth = 0  # counted modules now running: their rule already covers what they call

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        rule = FUNCTION_RULES.get(func)
        if rule is not None and self.depth == 0:
            self.macs += rule(args, kwargs, out)
        return out


def count_macs(model: nn.Module, *inputs: torch.Tensor) -> int:
    """Multiply-accumulates of ``model(*inputs)`` by the rules above; ``model`` is left without hooks."""
    functional = _FunctionalProducts()
    totals: list[int] = []
    handles = []

    def enter(*_: Any) -> None:
        functional.depth += 1

    def leave_and_count(rule: ModuleRule) -> Callable:
        def hook(m: nn.Module, x: tuple, y: Any) -> None:
            functional.depth -= 1
            totals.append(rule(m, x, y))

        return hook

    for m in model.modules():
        rule = module_rule(m)
        if rule is not None and rule is not _free:
            handles += [m.register_forward_pre_hook(enter), m.register_forward_hook(leave_and_count(rule))]
    try:
        with torch.no_grad(), functional:
            model(*inputs)
    finally:
        for h in handles:
            h.remove()
    return sum(totals) + functional.macs


def count_gflops(model: nn.Module, img_size: int | tuple[int, int] = 640, ch: int = 3) -> float:
    """GFLOPs (2 x multiply-accumulates) of one forward of a ``ch x img_size`` image, as THOP counts them.

    Counted in training mode on the ``meta`` device (shapes only, no memory): YOLOv7's auxiliary heads run
    in training; a batch of two (then halved) keeps batch norm on pooled 1x1 maps valid. A model with an op
    that has no meta kernel is counted on the CPU instead.
    """
    h, w = (img_size, img_size) if isinstance(img_size, int) else img_size
    batch = 2
    try:
        probe = copy.deepcopy(model).train().to("meta")
        macs = count_macs(probe, torch.zeros(batch, ch, h, w, device="meta"))
    except (NotImplementedError, RuntimeError):
        macs = count_macs(copy.deepcopy(model).train(), torch.zeros(batch, ch, h, w))
    return 2 * macs / batch / 1e9
