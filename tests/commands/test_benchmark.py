"""``yolo-attn benchmark``: the table, the --json line and the CSV agree, the GEMM fraction is computed from the
figures printed, and a bad --formats value is one line and exit 2."""

from __future__ import annotations

import csv
import json

import pytest

from yolo_attn.cli import main

pytest.importorskip("onnxruntime")


def test_table_json_and_csv_agree(shared, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["benchmark", "--weights", str(shared / "weights" / "yolov5n-v6.1.pt"),
            "--data", str(shared / "data" / "coco8" / "coco8.yaml"), "--formats", "torch,onnx", "--img", "64",
            "--batch", "4", "--workers", "0", "--runs", "2", "--warmup", "0", "--gemm-size", "128", "--json"]
    assert main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    result = json.loads(out[-1])
    save_dir = tmp_path / "runs" / "benchmark" / "exp"
    assert result["save_dir"] == "runs/benchmark/exp" and (save_dir / "yolov5n-v6.1.onnx").is_file()
    header = out.index(next(line for line in out if line.startswith("Format")))
    table = [line.split() for line in out[header + 1:header + 1 + len(result["rows"])]]
    assert [(r["format"], r["batch"]) for r in result["rows"]] == [("torch", 1), ("torch", 4), ("onnx", 1),
                                                                    ("onnx", 4)]
    gemm, gflops = result["gemm_gflops_per_s"], result["model_gflops"]
    assert f"{gemm:.1f} GFLOP/s" in out[header - 1] and f"{gflops:.3f} GFLOPs" in out[header - 1]
    for row, cells in zip(result["rows"], table, strict=True):
        assert cells[:2] == [row["format"], "ok"] and int(cells[5]) == row["batch"]
        assert float(cells[6]) == pytest.approx(row["ms_per_img"], abs=0.006)
        assert row["gemm_fraction"] == pytest.approx(gflops * row["img_per_s"] / gemm)
        printed = float(cells[9].rstrip("%")) / 100  # from the printed img/s, GFLOPs and GEMM rate, within rounding
        assert printed == pytest.approx(float(cells[8]) * gflops / gemm, rel=0.01, abs=6e-4)
    with (save_dir / "benchmark.csv").open() as f:
        written = list(csv.DictReader(f))
    assert [float(r["img_per_s"]) for r in written] == pytest.approx([r["img_per_s"] for r in result["rows"]])


@pytest.mark.parametrize("formats", ["tflite", "torch,,engine", ""])
def test_bad_formats_exit_2_with_one_line(formats, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["benchmark", "--weights", "w.pt", "--data", "d.yaml", "--formats", formats]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"yolo-attn benchmark: error: --formats {formats!r}: give one or more of torch, onnx, "
                   "comma-separated"]
    assert list(tmp_path.iterdir()) == []
