"""Shared fixtures: paths to the project's configs and to ../shared (real data, weights)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"../shared not found at {SHARED}")
    return SHARED


@pytest.fixture
def clean_plugins(monkeypatch):
    """The block registry and the plugin tables as they are without plugins, restored after the test (a plugin
    overriding a built-in block must not leak into other tests); ``reset()`` forgets the test's plugins mid-test,
    as a new process that was not given them."""
    import sys

    from yolo_attn import plugins
    from yolo_attn.nn import registry

    registry.ensure_loaded()
    tables = {name: dict(getattr(registry, name)) for name in ("_BLOCKS", "_CANONICAL", "_BY_SCHEMA")}
    modules = set(sys.modules)

    def reset() -> None:
        for name, table in tables.items():
            monkeypatch.setattr(registry, name, dict(table))
        monkeypatch.setattr(plugins, "_LOADED", {})
        monkeypatch.setattr(plugins, "_ORIGINS", {})

    reset()
    monkeypatch.delenv(plugins.ENV_VARIABLE, raising=False)
    yield reset
    for name in set(sys.modules) - modules:
        if name.startswith("yolo_attn_plugin_"):
            del sys.modules[name]
