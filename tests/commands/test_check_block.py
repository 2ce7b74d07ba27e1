"""``yolo-attn check-block`` and ``blocks --check``: the report card passes the seed posts' blocks and names each
mistake of a broken block in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from yolo_attn.cli import main
from yolo_attn.engine.block_check import CheckFailed, one_line, resolve_block
from yolo_attn.errors import UserError

FIXTURES = Path(__file__).parents[1] / "fixtures" / "plugins"
SEED_BLOCKS, BROKEN_BLOCKS = FIXTURES / "seed_blocks.py", FIXTURES / "broken_blocks.py"


def failures(out: str) -> dict[str, str]:
    """The card's failing checks: name -> its line."""
    rows = [line.split(None, 2) for line in out.splitlines() if line.startswith("  FAIL")]
    return {row[1]: row[2] for row in rows}


@pytest.mark.slow
@pytest.mark.parametrize("block,failed", [
    ("WrongWidth", {"yolov5n": "shape mismatch", "yolo11n": "shape mismatch",
                    "shapes": "output (2, 128, 20, 20) for input (2, 256, 20, 20): its YAML line implies 256"}),
    ("InplaceGate", {"shapes": "modified by an inplace operation", "determinism": "modified by an inplace operation"}),
    ("ShapeBranch", {"onnx": "onnxruntime at (2, 256, 16, 24): outputs differ by 5.00e-01 of their largest magnitude"}),
])
def test_a_broken_block_fails_with_one_line_per_mistake(block, failed, clean_plugins, capsys):
    assert main(["check-block", f"{BROKEN_BLOCKS}:{block}", "--repeats", "0"]) == 1
    out = capsys.readouterr().out
    assert f"{len(failed)} of 12 checks fail" in out.splitlines()[0]
    found = failures(out)
    assert set(found) == set(failed)
    for name, text in failed.items():
        assert text in found[name]


@pytest.mark.slow
def test_the_seed_posts_blocks_pass_every_check(clean_plugins, capsys):
    assert main(["blocks", "--check", "GAMAttention", "BAM", "CloAttention", "--plugin", str(SEED_BLOCKS),
                 "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "3 of 3 blocks pass every check" in out and not failures(out)
    assert main(["check-block", f"{SEED_BLOCKS}:DoubleAttentionLayer", "--args", "[1024, 3]", "--json"]) == 0
    out = capsys.readouterr().out
    assert "DoubleAttentionLayer, plugin " in out and "all checks pass" in out
    assert "after layer 9 as [1024, 3]: 1,939,491 parameters (+67,334)" in out


def test_the_block_argument(clean_plugins):
    with pytest.raises(UserError, match="name the class too"):
        resolve_block(str(SEED_BLOCKS))
    with pytest.raises(UserError, match=r"defines no nn.Module class 'Missing' \(its blocks: GAMAttention, "):
        resolve_block(f"{SEED_BLOCKS}:Missing")
    assert resolve_block(f"{SEED_BLOCKS}:BAM") == "BAM"
    assert resolve_block("SEAttention") == "SE"
    with pytest.raises(UserError, match="unknown block 'NoSuchBlock'"):
        resolve_block("NoSuchBlock")


def test_a_finding_is_one_short_line():
    long = RuntimeError("one of the variables needed for gradient computation has been modified by an inplace "
                        "operation: [torch.FloatTensor [2, 8]]. Hint: enable anomaly detection.\nTraceback ...")
    assert one_line(long) == ("RuntimeError: one of the variables needed for gradient computation has been modified "
                              "by an inplace operation: [torch.FloatTensor [2, 8]].")
    assert one_line(CheckFailed("output (2, 3)")) == "output (2, 3)"
