"""Generated documentation stays in step with the code: docs/cli.md is what ``docs/generate_cli.py`` makes from
the CLI's parsers, whatever the terminal it is generated in."""

import importlib.util
from types import ModuleType

import pytest

from tests.conftest import ROOT


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_cli", ROOT / "docs" / "generate_cli.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def generator(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("COLUMNS", "80")  # the generator fixes COLUMNS for its run; monkeypatch restores it after
    return load_generator()


def test_cli_reference_is_up_to_date(generator: ModuleType) -> None:
    page = generator.PAGE.read_text(encoding="utf-8")
    assert page == generator.cli_page(), f"docs/cli.md is out of date: run {generator.REGENERATE}"
    assert generator.main(["--check"]) == 0


def test_cli_reference_does_not_depend_on_the_terminal(generator: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    pages = set()
    for columns in ("40", "250"):
        monkeypatch.setenv("COLUMNS", columns)
        pages.add(generator.cli_page())
    assert len(pages) == 1


def test_check_fails_on_a_stale_page(generator: ModuleType, tmp_path, capsys) -> None:
    stale = tmp_path / "cli.md"
    stale.write_text(generator.cli_page().replace("--epochs", "--epochz"), encoding="utf-8")
    assert generator.main(["--check", "--out", str(stale)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert generator.main(["--check", "--out", str(tmp_path / "missing.md")]) == 1
