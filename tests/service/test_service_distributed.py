"""Distributed mode: the API alone, with jobs in Redis and tasks sent to Celery (no worker runs here)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from service_helpers import CAPTIONS, seed_clips, services_of

pytestmark = pytest.mark.redis


def test_api_only_mode_queues_uploads_for_celery_and_checks_redis(
    make_client: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    from videoseek.core import collections as core_collections
    from videoseek.core.store.server import ServerClipStore

    local = ServerClipStore.local()  # stands in for the Qdrant server

    def server_store(settings: Any) -> Any:
        return local

    monkeypatch.setattr(core_collections, "shared_store", server_store)
    monkeypatch.setattr(core_collections, "close_shared_store", lambda settings: None)
    prefix = f"videoseek-test-{uuid.uuid4().hex[:8]}:"
    client = make_client(
        redis_url="redis://127.0.0.1:6379/0",
        qdrant={"url": "http://qdrant.invalid:6333"},
        worker={"redis_prefix": prefix},
        client=("198.51.100.3", 9),  # no keys outside embedded mode: open to everyone (with a warning)
    )
    ready = client.get("/readyz").json()
    assert ready["mode"] == "distributed" and ready["checks"]["redis"] == "ok"
    assert client.post("/collections", json={"name": "dist"}).status_code == 201
    videos = seed_clips(client, "dist")
    top = client.post("/search", json={"collection": "dist", "query": CAPTIONS[1]}).json()["results"][0]
    assert top["video_id"] == videos[CAPTIONS[1]]

    video = b"\x00\x00\x00\x20ftypisom" + bytes(range(256)) * 4
    accepted = client.post("/collections/dist/videos", files={"file": ("a.mp4", video, "video/mp4")})
    assert accepted.status_code == 202, accepted.text
    job = client.get(f"/jobs/{accepted.json()['job_id']}").json()
    assert job["stage"] == "queued"  # waiting in Redis for a Celery worker
    assert services_of(client).jobs.get(accepted.json()["job_id"]) is not None
    metrics = client.get("/metrics").text  # the task waits in the broker: no worker runs here
    assert 'videoseek_queue_depth{queue="ingest"} 1.0' in metrics
    assert 'videoseek_queue_depth{queue="embed"} 0.0' in metrics
    local.close()
    import redis

    server = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    leftovers = list(server.scan_iter(match=f"{prefix}*"))
    assert any(b"celery" in key for key in leftovers)  # the task message went to the broker
    server.delete(*leftovers)
