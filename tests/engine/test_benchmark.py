"""``run_benchmark``: per-format accuracy through the validator, speeds, the GEMM rate and the fraction derived from
them (no timing assertions: only how the figures relate)."""

from __future__ import annotations

import csv
import sys

import pytest

from yolo_attn import build_model
from yolo_attn.checkpoint import make_checkpoint, save_checkpoint
from yolo_attn.engine import benchmark as benchmark_module
from yolo_attn.engine.benchmark import (
    CSV_NAME,
    ROW_KEYS,
    BenchmarkConfig,
    format_table,
    parse_formats,
    run_benchmark,
)
from yolo_attn.engine.latency import gemm_rate
from yolo_attn.engine.validator import EvalConfig
from yolo_attn.errors import UserError

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

FAST = {"runs": 2, "warmup": 1, "gemm_size": 128}


def config_for(shared, **overrides) -> BenchmarkConfig:
    """yolov5n v6.1 on COCO8's 4 validation images at 128 px (large enough for a non-zero mAP), batch 2."""
    values = {"weights": shared / "weights" / "yolov5n-v6.1.pt", "data": shared / "data" / "coco8" / "coco8.yaml",
              "eval": EvalConfig(img_size=128, batch_size=2, workers=0, coco=False), **FAST, **overrides}
    return BenchmarkConfig(**values)


@pytest.fixture(scope="module")
def result(shared, tmp_path_factory):
    return run_benchmark(config_for(shared), tmp_path_factory.mktemp("bench") / "exp")


def test_onnx_map_equals_torch_map(result):
    torch_result, onnx_result = result.formats
    assert (torch_result.format, onnx_result.format) == ("torch", "onnx")
    assert torch_result.status == onnx_result.status == "ok"
    assert torch_result.map50_95 > 0.05  # a real detector on real images, not two zeros
    assert abs(onnx_result.map50_95 - torch_result.map50_95) < 1e-3
    assert abs(onnx_result.map50 - torch_result.map50) < 1e-3
    assert (result.save_dir / "yolov5n-v6.1.onnx").stat().st_size / 1e6 == pytest.approx(onnx_result.size_mb)


def test_rows_and_fraction_follow_from_the_timings(result):
    rows = result.rows()
    assert [(r["format"], r["batch"]) for r in rows] == [("torch", 1), ("torch", 2), ("onnx", 1), ("onnx", 2)]
    assert result.img_size == 128 and result.gemm_size == 128 and result.model_gflops > 0
    for fmt in result.formats:
        for speed in fmt.speeds:
            assert speed.latency.runs == FAST["runs"]
            assert speed.ms_per_img == pytest.approx(speed.latency.median_ms / speed.batch)
            assert speed.latency.p90_ms >= speed.latency.median_ms
    for row in rows:
        assert set(row) == set(ROW_KEYS)
        assert row["img_per_s"] == pytest.approx(1e3 / row["ms_per_img"])
        assert row["gemm_fraction"] == pytest.approx(result.model_gflops * row["img_per_s"] / result.gemm_gflops_per_s)


def test_csv_holds_the_rows(result):
    with (result.save_dir / CSV_NAME).open() as f:
        written = list(csv.DictReader(f))
    assert [r["format"] for r in written] == ["torch", "torch", "onnx", "onnx"]
    for row, expected in zip(written, result.rows(), strict=True):
        assert float(row["gemm_fraction"]) == pytest.approx(expected["gemm_fraction"])
        assert float(row["gemm_gflops_per_s"]) == pytest.approx(result.gemm_gflops_per_s)


def test_table_has_a_line_per_format_and_batch(result):
    lines = format_table(result).splitlines()
    assert "GFLOP/s" in lines[0] and lines[1].split()[:2] == ["Format", "Status"]
    assert [line.split()[:2] for line in lines[2:]] == [["torch", "ok"]] * 2 + [["onnx", "ok"]] * 2


def test_a_failing_format_is_its_status(shared, tmp_path, monkeypatch):
    def broken_export(*args, **kwargs):
        raise RuntimeError("no exporter for this block")

    monkeypatch.setattr(benchmark_module, "export_onnx", broken_export)
    config = config_for(shared, eval=EvalConfig(img_size=64, batch_size=1, workers=0), runs=1, warmup=0)
    result = run_benchmark(config, tmp_path / "exp")
    torch_row, onnx_row = result.rows()
    assert torch_row["status"] == "ok" and torch_row["gemm_fraction"] is not None
    assert onnx_row["status"] == "failed: RuntimeError: no exporter for this block"
    assert onnx_row["map50_95"] is None and onnx_row["ms_per_img"] is None
    assert format_table(result).splitlines()[-1].split()[:3] == ["onnx", "failed", "-"]


def test_bad_formats_and_missing_onnxruntime_are_refused_before_anything_runs(shared, tmp_path, monkeypatch):
    assert parse_formats("onnx, torch,onnx") == ("onnx", "torch")
    for bad in ("", "torch,tflite", "pt"):
        with pytest.raises(UserError, match="--formats .*: give one or more of torch, onnx"):
            parse_formats(bad)
    with pytest.raises(UserError, match="--runs 0: must be at least 1"):  # a config built in Python is checked too
        run_benchmark(config_for(shared, runs=0), tmp_path / "exp")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes ``import onnxruntime`` fail
    with pytest.raises(UserError, match=r"onnxruntime: pip install 'yolo-attn\[export\]'"):
        run_benchmark(config_for(shared), tmp_path / "exp")
    assert not (tmp_path / "exp").exists()


def test_bad_input_stops_the_benchmark(shared, tmp_path):
    """A model whose classes differ from the data's is the user's error, not a format's failure."""
    weights = tmp_path / "two_classes.pt"
    save_checkpoint(weights, make_checkpoint(build_model("yolov5n.yaml", nc=2), names=["a", "b"]))
    with pytest.raises(UserError, match="the model predicts 2 classes but .* has 80"):
        run_benchmark(config_for(shared, weights=weights, formats="torch"), tmp_path / "exp")


def test_gemm_rate_is_the_operations_over_the_median_time():
    rate, latency = gemm_rate(64, runs=3, warmup=0, threads=1)
    assert latency.runs == 3
    assert rate == pytest.approx(2 * 64**3 / (latency.median_ms * 1e6))
