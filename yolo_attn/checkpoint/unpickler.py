"""Restricted unpickling of upstream YOLOv5 / YOLOv7 checkpoints.

Upstream checkpoints are pickles of YOLOv5/YOLOv7 classes (``models.yolo.Model``, ...).
:class:`RestrictedUnpickler` rebuilds tensors and plain containers, turns every other class into an
inert :class:`UpstreamRecord` of its pickled state and refuses any other callable: nothing in the
file is imported or executed.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import collections
import pickle
import types
from typing import Any

import numpy as np
import torch
from torch import nn

from yolo_attn.errors import UserError


class UnsafeCheckpointError(UserError):
    """A pickle that asks to call something outside the allow-list (e.g. ``os.system``)."""


class UpstreamRecord:
    """Inert stand-in for an upstream object (a module, ...): keeps its constructor args and state."""

    upstream_class = "?"
    args: tuple[Any, ...]
    state: Any

    def __new__(cls, *args: Any, **kwargs: Any) -> UpstreamRecord:
        record = super().__new__(cls)
        record.args, record.state = args, {}
        return record

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<record of {self.upstream_class}>"


_record_classes: dict[str, type[UpstreamRecord]] = {}


def _record_class(module: str, name: str) -> type[UpstreamRecord]:
    qualified = f"{module}.{name}"
    if qualified not in _record_classes:
        _record_classes[qualified] = type(name, (UpstreamRecord,), {"upstream_class": qualified})
    return _record_classes[qualified]


try:  # numpy >= 2 moved the pickled helpers to numpy._core; numpy.core still names them in old pickles
    from numpy._core import multiarray as _multiarray
except ImportError:
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]  # the same module, numpy < 2

_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    ("torch._tensor", "_rebuild_from_type_v2"): torch._tensor._rebuild_from_type_v2,
    ("torch.nn.parameter", "Parameter"): nn.Parameter,
    ("torch", "Tensor"): torch.Tensor,
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    ("torch", "UntypedStorage"): torch.UntypedStorage,
    # numpy scalars and arrays (``best_fitness`` of training checkpoints); protocol 2 writes their bytes via encode
    ("_codecs", "encode"): codecs.encode,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    **{(module, name): getattr(_multiarray, name)
       for module in ("numpy.core.multiarray", "numpy._core.multiarray") for name in ("_reconstruct", "scalar")},
}
# Packages whose globals are never turned into records: asking for anything there is refused.
_REFUSED_PACKAGES = frozenset({
    "builtins", "os", "posix", "nt", "sys", "subprocess", "shutil", "importlib", "runpy", "pickle",
    "_pickle", "marshal", "ctypes", "code", "codeop", "types", "functools", "operator", "io", "_io", "pty", "socket",
    "multiprocessing", "threading", "signal", "copyreg", "webbrowser", "inspect", "pdb", "timeit",
    "numpy", "torch._C", "torch.hub", "torch.serialization", "torch.ops",
})


def _refused_package(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in _REFUSED_PACKAGES)


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that imports nothing: allow-listed tensor rebuilds and containers, records for classes.

    A global named like a class (``models.yolo.Model``, ``torch.nn.modules.conv.Conv2d``) becomes an
    :class:`UpstreamRecord` subclass; a function or anything from a system package is refused.
    """

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names (protocol < 3 pickles): __builtin__ -> builtins, commands -> subprocess, ...
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        allowed = _ALLOWED_GLOBALS.get((module, name))
        if allowed is not None:
            return allowed
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if name.isidentifier() and name[0].isupper() and not _refused_package(module):
            return _record_class(module, name)
        raise UnsafeCheckpointError(
            f"the pickle asks for {module}.{name}, which is not allowed (only tensors, plain containers and "
            f"inert records of classes are); refusing to load it"
        )


def _restricted_load(file: Any, **kwargs: Any) -> Any:
    return RestrictedUnpickler(file, **kwargs).load()


# ``torch.load`` needs a module-like object with ``Unpickler`` and ``load``.
restricted_pickle = types.SimpleNamespace(__name__="yolo_attn_restricted_pickle", Unpickler=RestrictedUnpickler,
                                          load=_restricted_load)
