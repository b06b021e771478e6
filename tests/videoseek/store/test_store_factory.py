"""open_store picks the implementation from the settings."""

from __future__ import annotations

from pathlib import Path

from videoseek.settings import load_settings
from videoseek.store import open_store
from videoseek.store.edge import EdgeClipStore
from videoseek.store.server import ServerClipStore


def test_embedded_edge_store_lives_under_the_data_dir(tmp_path: Path) -> None:
    store = open_store(load_settings(data_dir=tmp_path))
    assert isinstance(store, EdgeClipStore) and store.root == tmp_path / "qdrant"
    store.close()


def test_a_qdrant_url_selects_the_server_store(tmp_path: Path) -> None:
    store = open_store(load_settings(data_dir=tmp_path, qdrant={"url": "http://127.0.0.1:1"}))
    assert isinstance(store, ServerClipStore)
    store.close()
