"""Shared test fixtures: every test gets a clean VIDEOSEEK_* environment and fresh cached settings."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from videoseek.core.settings import get_settings

REPO_ROOT = Path(__file__).resolve().parents[1]
CORPUS_DIR = REPO_ROOT.parent / "shared" / "corpus"


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No test sees the developer's VIDEOSEEK_* variables or writes into the working directory's data dir."""
    for name in list(os.environ):
        if name.startswith("VIDEOSEEK_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("VIDEOSEEK_DATA_DIR", str(tmp_path / "videoseek-data"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def corpus_dir() -> Path:
    """The shared real-world video corpus; tests using it skip where the folder is absent."""
    if not CORPUS_DIR.is_dir():
        pytest.skip(f"shared corpus not found at {CORPUS_DIR}")
    return CORPUS_DIR
