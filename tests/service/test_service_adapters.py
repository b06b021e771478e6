"""A collection with an adapter is searched with that adapter's query embeddings, and says which one."""

from __future__ import annotations

from pathlib import Path

import pytest
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


def test_an_adapter_the_server_cannot_use_gets_one_answer_whatever_the_reason(
    seeded: tuple[TestClient, dict[str, str]], tmp_path: Path
) -> None:
    client, _ = seeded
    plain_dir, a_file = tmp_path / "plain-dir", tmp_path / "file.txt"
    plain_dir.mkdir()
    a_file.write_text("x")
    unusable = [
        str(tmp_path / "missing"),
        str(plain_dir),  # exists, holds no adapter
        str(a_file),
        str(tmp_path / ("x" * 300)),  # longer than a file name may be
        f"{tmp_path}/a\x00b",
        "0" * 64,  # a version nobody installed
    ]
    reasons = set()
    for adapter in unusable:
        for path, body in (
            ("/collections", {"name": "new", "adapter": adapter}),
            ("/collections/shapes/reindex", {"adapter": adapter}),
        ):
            response = client.post(path, json=body)
            assert response.status_code == 422 and response.json()["code"] == "invalid_adapter", response.text
            reasons.add(response.json()["reason"].replace(repr(adapter[:200]), "ADAPTER"))
    assert len(reasons) == 1, reasons  # nothing says which of these it was
    assert "ADAPTER" in reasons.pop()


def test_a_tilde_in_an_adapter_path_is_never_expanded(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_adapter(tmp_path / "home" / "adapter")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for adapter in ("~/adapter", "~nosuchuser/adapter", "~root/adapter", "adapter"):
        response = client.post("/collections", json={"name": "tilde", "adapter": adapter})
        assert response.status_code == 422, (adapter, response.text)
        assert "absolute path" in response.json()["reason"]
    absolute = client.post(
        "/collections", json={"name": "tilde", "adapter": str(tmp_path / "home" / "adapter")}
    )
    assert absolute.status_code == 201, absolute.text
