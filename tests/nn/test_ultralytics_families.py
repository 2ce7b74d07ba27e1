"""Every detection YAML that Ultralytics 8.4.190 ships (v3, v5u, v6, v8, v9, v10, 11, 12, 26 and their -p2/-p6/-ghost
variants), at every scale: it builds with Ultralytics' exact parameter count and state-dict keys and shapes, and
GFLOPs within 0.1 %, or it is refused with a clear error. Nothing that builds may differ from its reference.

``tests/fixtures/ultralytics/model_counts.json`` holds Ultralytics' own numbers (see the README there).
"""

import hashlib
import json

import pytest
import torch

from tests.conftest import ROOT
from yolo_attn.nn.builder import ModelConfigError, load_model_yaml, model_schema, parse_layers, resolve_scale
from yolo_attn.nn.model import DetectionModel
from yolo_attn.nn.summary import count_gflops, count_params

COUNTS = json.loads((ROOT / "tests" / "fixtures" / "ultralytics" / "model_counts.json").read_text())

# Configs refused today, each with the reason. The list may only shrink: a config here that builds fails the test.
REFUSED: dict[str, str] = {}


def _key_digest(model: torch.nn.Module) -> str:
    lines = "".join(f"{k}:{tuple(v.shape)}\n" for k, v in sorted(model.state_dict().items()))
    return hashlib.sha1(lines.encode()).hexdigest()


def meta_model(cfg: str) -> DetectionModel:
    """``cfg`` laid out on the meta device (counts without weights or a stride probe)."""
    d = resolve_scale(load_model_yaml(cfg))
    with torch.device("meta"):
        layers, save, _ = parse_layers(d, 3)
    return DetectionModel(layers, save, d)


def _is_small(cfg: str) -> bool:
    return cfg.startswith(("yolov5nu", "yolov6n", "yolov8n", "yolov9t", "yolov10n", "yolo11n", "yolo12n", "yolo26n",
                           "yolov3-tiny"))


def _check(cfg: str) -> None:
    expected = COUNTS[cfg]
    try:
        model = meta_model(cfg)
    except ModelConfigError as e:
        assert cfg in REFUSED, f"{cfg} is refused but not listed as refused: {e}"
        return
    assert cfg not in REFUSED, f"{cfg} builds now: check it and take it off REFUSED"
    assert count_params(model) == expected["params"]
    assert len(model.state_dict()) == expected["keys"] and _key_digest(model) == expected["keys_sha1"]
    assert count_gflops(model, 640) == pytest.approx(expected["gflops"], rel=1e-3)


@pytest.mark.parametrize("cfg", sorted(c for c in COUNTS if _is_small(c)))
def test_smallest_scale_is_exact_or_refused(cfg):
    _check(cfg)


@pytest.mark.slow
@pytest.mark.parametrize("cfg", sorted(c for c in COUNTS if not _is_small(c)))
def test_larger_scales_are_exact_or_refused(cfg):
    _check(cfg)


def test_every_ultralytics_yaml_reads_as_the_ultralytics_schema():
    for cfg in COUNTS:
        assert model_schema(resolve_scale(load_model_yaml(cfg))) == "ultralytics", cfg


def test_yolov5_yaml_keeps_yolov5_semantics():
    """YOLOv5's own yolov5n.yaml (anchor-based) is not Ultralytics' v5u: its Bottlenecks stay 1x1 + 3x3."""
    d = load_model_yaml("yolov5n.yaml")
    assert model_schema(d) == "yolov5"
    assert count_params(meta_model("yolov5n.yaml")) == 1_872_157
