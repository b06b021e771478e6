"""Upload metadata the stores could not read back is a 422 naming the rule; a damaged collection stays alone."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from service_helpers import CAPTIONS, seed_clips, services_of, settings_for, start_client

from videoseek.metadata import MAX_METADATA_DEPTH

MP4_HEAD = b"\x00\x00\x00\x20ftypisom" + bytes(100)  # enough for the upload's media sniffing
TOO_DEEP_PATH = "metadata.x" + "[0]" * (MAX_METADATA_DEPTH - 1)


def nested(levels: int) -> str:
    return '{"x": ' + "[" * (levels - 1) + "1" + "]" * (levels - 1) + "}"


def upload_with_metadata(client: TestClient, collection: str, metadata: str) -> Any:
    return client.post(
        f"/collections/{collection}/videos",
        files={"file": ("clip.mp4", MP4_HEAD, "video/mp4")},
        data={"metadata": metadata},
    )


def search(client: TestClient, collection: str) -> Any:
    return client.post("/search", json={"collection": collection, "query": CAPTIONS[0], "limit": 3})


@pytest.mark.parametrize(
    ("metadata", "rule", "path"),
    [
        (nested(130), "depth", TOO_DEEP_PATH),
        (nested(20_000), "depth", TOO_DEEP_PATH),
        ('{"camera": "door", "x": NaN}', "number", "metadata.x"),
        ('{"n": ' + "9" * 4000 + "}", "integer", "metadata.n"),
    ],
    ids=["130 levels", "20000 levels", "NaN", "4000-digit integer"],
)
def test_metadata_the_stores_could_not_read_back_is_a_422_naming_the_rule_and_the_path(
    shapes: tuple[TestClient, dict[str, str]], metadata: str, rule: str, path: str
) -> None:
    client, _ = shapes
    response = upload_with_metadata(client, "shapes", metadata)
    assert response.status_code == 422, response.text
    body = response.json()
    assert (body["code"], body["rule"], body["path"]) == ("invalid_metadata", rule, path)
    assert body["reason"].startswith(f"{path}: ") and f"rule '{rule}'" in body["reason"]
    services = services_of(client)
    assert services.jobs.list("shapes") == []  # refused before any job or file existed
    assert list(services.layout.uploads_dir.glob("*")) == []
    searched = search(client, "shapes")
    assert searched.status_code == 200 and len(searched.json()["results"]) == 3


def test_a_collection_whose_shard_cannot_be_opened_is_a_503_naming_it_while_the_others_serve(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path / "data")
    with ExitStack() as stack:
        client = start_client(stack, settings)
        for name in ("broken", "fine"):
            assert client.post("/collections", json={"name": name}).status_code == 201
            seed_clips(client, name)
    with (settings.qdrant_path / "vs__broken__1" / "wal" / "open-1").open("r+b") as wal:
        wal.write(b"\xff" * 4096)  # a torn write, a failing disk

    with ExitStack() as stack:
        client = start_client(stack, settings)  # the store opens: readiness is reached
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "degraded"
        assert "collection 'broken' cannot be opened" in ready.json()["checks"]["store"]
        listed = client.get("/collections").json()
        assert [c["name"] for c in listed["collections"]] == ["fine"]
        assert "cannot be opened" in listed["unavailable"]["broken"]
        refused = search(client, "broken")
        assert refused.status_code == 503 and refused.json()["code"] == "collection_unavailable"
        assert "'broken'" in refused.json()["reason"]
        assert upload_with_metadata(client, "broken", "{}").status_code == 503
        assert search(client, "fine").status_code == 200
        assert len(search(client, "fine").json()["results"]) == 3

        assert client.delete("/collections/broken").status_code == 200  # the way out
        healthy = client.get("/readyz").json()
        assert (healthy["status"], healthy["checks"]["store"]) == ("ok", "ok")
        assert client.post("/collections", json={"name": "broken"}).status_code == 201
