"""Fixtures of the test_survive_* tests."""

from __future__ import annotations

import pytest

from tests.engine.survive import TINY, tiny_dataset, write_micro_model


@pytest.fixture(scope="module")
def micro(tmp_path_factory) -> dict:
    """Training options for a seconds-long run: the micro CBAM detector on the tiny synthetic set."""
    folder = tmp_path_factory.mktemp("micro")
    return {"cfg": write_micro_model(folder), "data": tiny_dataset(folder / "data"), **TINY}
