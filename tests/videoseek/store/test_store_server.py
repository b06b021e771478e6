"""Server-only behaviour: connection errors, metadata kept in Qdrant, foreign aliases ignored."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as qm
from store_testdata import DIM, clip, unit

from videoseek.store import CollectionUnreadable, StoreUnavailable
from videoseek.store.server import META_KEY, ServerClipStore


def test_refused_connection_is_store_unavailable_quickly() -> None:
    store = ServerClipStore.connect("http://127.0.0.1:1", timeout_s=2)
    started = time.monotonic()
    for call in (
        lambda: store.list_collections(),
        lambda: store.search("clips", unit(0), 3),
        lambda: store.upsert("clips", [clip("v1", 0)]),
    ):
        with pytest.raises(StoreUnavailable):
            call()
    assert time.monotonic() - started < 5.0
    store.close()


def test_version_metadata_lives_in_qdrant_collection_metadata(tmp_path: Path) -> None:
    client = QdrantClient(path=str(tmp_path), force_disable_check_same_thread=True)
    store = ServerClipStore(client, local=True)
    store.create_collection("clips", DIM, model="ViT-B-32:openai", adapter_version="a1")
    meta = client.get_collection("vs__clips__1").config.metadata[META_KEY]  # type: ignore[index]
    assert (meta["collection"], meta["dim"], meta["model"], meta["adapter_version"]) == (
        "clips",
        DIM,
        "ViT-B-32:openai",
        "a1",
    )
    assert {a.alias_name: a.collection_name for a in client.get_aliases().aliases} == {
        "clips": "vs__clips__1"
    }
    store.close()


def test_collections_videoseek_did_not_make_are_not_listed() -> None:
    store = ServerClipStore.local()
    client: QdrantClient = store._client  # the same local instance
    client.create_collection("foreign", vectors_config=qm.VectorParams(size=4, distance=qm.Distance.COSINE))
    client.update_collection_aliases(
        change_aliases_operations=[
            qm.CreateAliasOperation(
                create_alias=qm.CreateAlias(collection_name="foreign", alias_name="alias")
            )
        ]
    )
    store.create_collection("clips", DIM, model="m")
    assert [c.name for c in store.list_collections()] == ["clips"]
    store.close()


def test_a_collection_with_damaged_metadata_leaves_the_others_serving_and_can_be_deleted() -> None:
    store = ServerClipStore.local()
    client: QdrantClient = store._client  # the same local instance
    store.create_collection("fine", DIM, model="m")
    store.upsert("fine", [clip("v1", 0)])
    client.create_collection(  # what videoseek made, with its metadata since damaged (dim lost)
        "vs__broken__1",
        vectors_config=qm.VectorParams(size=DIM, distance=qm.Distance.COSINE),
        metadata={META_KEY: {"collection": "broken", "model": "m"}},
    )
    client.update_collection_aliases(
        change_aliases_operations=[
            qm.CreateAliasOperation(
                create_alias=qm.CreateAlias(collection_name="vs__broken__1", alias_name="broken")
            )
        ]
    )
    assert [c.name for c in store.list_collections()] == ["fine"]
    problems = store.unreadable_collections()
    assert list(problems) == ["broken"] and "collection 'broken' cannot be opened" in problems["broken"]
    with pytest.raises(CollectionUnreadable, match="'broken'"):
        store.search("broken", unit(0), 3)
    assert [h.video_id for h in store.search("fine", clip("v1", 0).pooled, 1)] == ["v1"]
    store.delete_collection("broken")
    assert store.unreadable_collections() == {}
    assert "vs__broken__1" not in {c.name for c in client.get_collections().collections}
    store.close()
