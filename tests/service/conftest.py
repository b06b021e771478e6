"""Fixtures for the service tests: a real app (real store, job store, model) on a temporary data dir."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from service_helpers import LOCAL, seed_clips, settings_for, start_client

from videoseek.store import ClipStore


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    """Start apps on this test's data dir; every one is shut down at the end of the test."""
    with ExitStack() as stack:

        def make(
            *,
            client: tuple[str, int] = LOCAL,
            raise_server_exceptions: bool = True,
            wait: bool = True,
            store: ClipStore | None = None,
            **overrides: Any,
        ) -> TestClient:
            settings = settings_for(tmp_path / "data", **overrides)
            return start_client(
                stack,
                settings,
                client=client,
                raise_server_exceptions=raise_server_exceptions,
                wait=wait,
                store=store,
            )

        yield make


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


def _seeded(client: TestClient) -> tuple[TestClient, dict[str, str]]:
    assert client.post("/collections", json={"name": "shapes"}).status_code == 201
    return client, seed_clips(client, "shapes")


@pytest.fixture
def seeded(client: TestClient) -> tuple[TestClient, dict[str, str]]:
    """An open app of its own with collection 'shapes' holding the synthetic clips of CAPTIONS."""
    return _seeded(client)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """Like ``seeded`` but shared by a module's tests: only for tests that leave the collection unchanged."""
    with ExitStack() as stack:
        client = start_client(stack, settings_for(tmp_path_factory.mktemp("shapes") / "data"))
        yield _seeded(client)
