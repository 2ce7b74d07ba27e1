"""``yolo-attn cam`` from the command line: a two-row figure for two architectures, ``--json``, and bad
input as one error line with exit code 2."""

from __future__ import annotations

import json

import pytest

from tests.engine.test_cam import variant_checkpoint
from yolo_attn.cli import main


@pytest.fixture(scope="module")
def weights(shared, tmp_path_factory):
    official = shared / "weights" / "yolov5n-v6.1.pt"
    return [str(official), str(variant_checkpoint(tmp_path_factory.mktemp("cli") / "cbam_gam.pt", official))]


def test_base_and_variant_in_one_call(weights, shared, tmp_path, capsys):
    source = shared / "data" / "images" / "zidane.jpg"
    code = main(["cam", "--weights", *weights, "--source", str(source), "--img", "256", "--dpi", "40",
                 "--project", str(tmp_path / "runs"), "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["figures"] == [str(tmp_path / "runs" / "exp" / "zidane.png")]
    rows = summary["images"][str(source)]
    assert list(rows) == ["yolov5n-v6.1", "cbam_gam"]
    assert rows["cbam_gam"]["spatial_gates"] == ["layer 7 GAMAttention spatial gate", "layer 11 CBAM spatial gate"]
    assert (tmp_path / "runs" / "exp" / "zidane.png").stat().st_size > 0


@pytest.mark.parametrize("extra, message", [
    (["--layer", "30"], "--layer 30: yolov5n-v6.1 has layers 0..23 before its head"),
    (["--block", "9"], "--block 9: no attention block with a map to show there"),
    (["--class", "unicorn"], "--class unicorn: not a class of yolov5n-v6.1"),
])
def test_bad_input_is_one_error_line(extra, message, weights, shared, tmp_path, capsys):
    source = shared / "data" / "images" / "bus.jpg"
    code = main(["cam", "--weights", weights[0], "--source", str(source), "--img", "64",
                 "--project", str(tmp_path), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(f"yolo-attn cam: error: {message}")


def test_unreadable_image_is_one_error_line(weights, tmp_path, capsys):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 truncated")
    assert main(["cam", "--weights", weights[0], "--source", str(broken), "--project", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"yolo-attn cam: error: {broken}: not a readable image"
