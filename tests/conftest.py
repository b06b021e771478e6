"""Shared test fixtures: every test gets a clean VIDEOSEEK_* environment and fresh cached settings.

With ``VIDEOSEEK_TESTS_NO_SKIP=1`` (``.ci/run`` sets it) a skipped test fails instead: tests skip where Redis,
Chromium or the shared corpus are missing, and in CI that would hide a test that never ran.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from videoseek.settings import get_settings

# Modules the tests share (factories of odd videos, the tiny CLIP kit, service and ingest helpers) import by
# name from tests/helpers; the fixtures many packages use are a plugin of this conftest.
sys.path.insert(0, str(Path(__file__).resolve().parent / "helpers"))
pytest_plugins = ["shared_fixtures"]

REPO_ROOT = Path(__file__).resolve().parents[1]
CORPUS_DIR = REPO_ROOT.parent / "shared" / "corpus"
NO_SKIP_ENV = "VIDEOSEEK_TESTS_NO_SKIP"
_NO_SKIP = pytest.StashKey[bool]()


def pytest_configure(config: pytest.Config) -> None:
    # Read once here: the autouse fixture below removes VIDEOSEEK_* variables while each test runs.
    config.stash[_NO_SKIP] = os.environ.get(NO_SKIP_ENV) == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and item.config.stash[_NO_SKIP] and not hasattr(report, "wasxfail"):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped, but {NO_SKIP_ENV}=1 requires every selected test to run: {reason}"


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No test sees the developer's VIDEOSEEK_* variables, writes into the working directory's data dir or
    downloads model weights."""
    for name in list(os.environ):
        if name.startswith("VIDEOSEEK_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("VIDEOSEEK_DATA_DIR", str(tmp_path / "videoseek-data"))
    # No test downloads model weights unless it says so (tests/videoseek/test_model_download.py, a local hub).
    monkeypatch.setenv("VIDEOSEEK_MODEL_DOWNLOAD", "never")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def corpus_dir() -> Path:
    """The shared real-world video corpus; tests using it skip where the folder is absent."""
    if not CORPUS_DIR.is_dir():
        pytest.skip(f"shared corpus not found at {CORPUS_DIR}")
    return CORPUS_DIR
