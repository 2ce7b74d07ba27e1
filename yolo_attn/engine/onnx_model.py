"""An exported ONNX graph run by onnxruntime behind the interface of our models, so that the validator
(:func:`~yolo_attn.engine.validator.evaluate`: the same letterbox, NMS and metrics) and the latency timer
(:func:`~yolo_attn.engine.latency.interleaved_latency`) take it as they take the torch model it came from.

The graph is :func:`~yolo_attn.engine.exporter.export_onnx`'s: input ``images`` (b, 3, h, w) in [0, 1], one output,
the decoded rows the head returns in eval mode. onnx and onnxruntime come with the ``export`` extra.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from yolo_attn.engine.exporter import INPUT_NAME, require
from yolo_attn.nn.model import DetectionModel

LOGGER = logging.getLogger(__name__)


def providers(onnxruntime: ModuleType, device: torch.device | str) -> list[str]:
    """onnxruntime's execution providers for ``device``: its CUDA provider first on a CUDA device when it has one
    (onnxruntime-gpu), then the CPU."""
    if torch.device(device).type != "cuda":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    LOGGER.warning("onnxruntime has no CUDA provider (pip install onnxruntime-gpu): the ONNX graph runs on the CPU")
    return ["CPUExecutionProvider"]


class OnnxDetector(nn.Module):
    """An onnxruntime session as a module: ``forward(images)`` is the graph's decoded output as a tensor on the
    images' device. ``stride``, ``nc`` and ``names`` are the torch model's; so is ``head``, read only for its
    contract (objectness, end-to-end), never run: the graph holds the weights. ``threads``: onnxruntime's
    intra-op threads (default: torch's current number, as the torch model gets), which sleep when idle. On a CUDA
    ``device`` the graph runs on onnxruntime's CUDA provider when it has one (onnxruntime-gpu), else on the CPU."""

    stride: torch.Tensor

    def __init__(self, path: str | Path, source: DetectionModel, threads: int | None = None,
                 device: torch.device | str = "cpu") -> None:
        super().__init__()
        onnxruntime = require("onnxruntime")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        # idle threads sleep at once instead of spinning: spinning ones would take the cores from whatever runs
        # next (the torch model timed in turn with this one, the GEMM)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(str(path), options, providers=providers(onnxruntime, device))
        self.register_buffer("stride", source.stride.detach().cpu().clone())
        self.nc = source.nc
        self.names = list(source.names)
        self._source_head = (source.head,)  # a tuple: not a submodule, its weights are not this module's

    @property
    def head(self) -> nn.Module:
        return self._source_head[0]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        array = images.detach().to("cpu", torch.float32).contiguous().numpy()
        (output,) = self.session.run(None, {INPUT_NAME: array})
        return torch.from_numpy(output).to(images.device)
