"""A collection with an adapter is searched with that adapter's query embeddings, and says which one."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from service_helpers import CAPTIONS, MATCHING_CLIP, make_adapter, seed_clips, services_of

from service.batching import normalise_query


def test_queries_use_the_collections_adapter_version(client: TestClient, tmp_path: Path) -> None:
    created = client.post(
        "/collections", json={"name": "adapted", "adapter": str(make_adapter(tmp_path / "a"))}
    )
    assert created.status_code == 201, created.text
    version = created.json()["adapter_version"]
    assert version and len(version) == 64
    videos = seed_clips(client, "adapted", adapter_version=version)
    engine = services_of(client).require_engine()
    for caption, expected in videos.items():
        body = client.post("/search", json={"collection": "adapted", "query": caption}).json()
        assert body["adapter_version"] == version
        assert (body["results"][0]["video_id"], body["results"][0]["clip_index"]) == (expected, MATCHING_CLIP)
        assert engine.embedder.cached((version, normalise_query(caption))) is not None
        assert engine.embedder.cached((None, normalise_query(caption))) is None

    by_version = client.post("/collections", json={"name": "same-adapter", "adapter": version})
    assert by_version.status_code == 201 and by_version.json()["adapter_version"] == version
    plain = client.post("/collections", json={"name": "plain"}).json()
    assert plain["adapter_version"] is None
    seed_clips(client, "plain")
    assert (
        client.post("/search", json={"collection": "plain", "query": CAPTIONS[0]}).json()["adapter_version"]
        is None
    )
