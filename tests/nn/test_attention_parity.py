"""Output-level parity with YOLOAir (github.com/iscyy/yoloair): each fixture in
``tests/fixtures/yoloair_attention`` holds a state_dict saved from YOLOAir's own module (YOLOAir's keys),
a seeded input and YOLOAir's eval-mode output (see that folder's README). Our block, built from the
fixture's args through the block's rule (``Keywords.bind``: the values in the YAML's order, named and converted
to the constructor's contract), must load the state_dict by key (strict) and reproduce the output."""

from pathlib import Path

import pytest
import torch

from yolo_attn.nn.registry import lookup

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "yoloair_attention"
PATHS = sorted(FIXTURES.glob("*.pt"))

# Every attention block of the zoo whose formulation YOLOAir shares (CBAM, MHSA, CoTAttention and
# GlobalContext differ from YOLOAir's classes of the same name on purpose; see their docstrings).
COVERED = {
    "ACmix", "CA", "CrissCrossAttention", "EffectiveSE", "GAMAttention", "NAMAttention", "S2Attention", "SE",
    "ShuffleAttention", "SimAM", "SKAttention", "SOCA",
}


def load(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def test_fixtures_cover_the_shared_blocks():
    assert {load(p)["name"] for p in PATHS} == COVERED


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_output_matches_yoloair(path):
    fixture = load(path)
    spec = lookup(fixture["name"])
    args, kwargs = spec.rule.bind(fixture["args"])
    block = spec.cls(*args, **kwargs)
    block.load_state_dict(fixture["state_dict"], strict=True)
    with torch.no_grad():
        out = block.eval()(fixture["input"].clone())
    torch.testing.assert_close(out, fixture["output"], rtol=1e-5, atol=1e-5)
