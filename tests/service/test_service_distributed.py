"""Distributed mode: the API alone, with jobs in Redis and tasks sent to Celery (no worker runs here)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from service_helpers import CAPTIONS, seed_clips, services_of

from worker.runtime import DistributedRuntime

pytestmark = pytest.mark.redis


@pytest.fixture
def distributed(
    make_client: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., TestClient]]:
    """Builds API-only clients on the local Redis (own key prefix) with qdrant-client's local mode as server."""
    from videoseek.store.server import ServerClipStore

    local = ServerClipStore.local()  # stands in for the Qdrant server
    prefix = f"videoseek-test-{uuid.uuid4().hex[:8]}:"

    def make(**worker: Any) -> TestClient:
        return make_client(
            redis_url="redis://127.0.0.1:6379/0",
            qdrant={"url": "http://qdrant.invalid:6333"},
            worker={"redis_prefix": prefix, **worker},
            client=("198.51.100.3", 9),  # no keys outside embedded mode: open to everyone (with a warning)
            store=local,
        )

    yield make
    local.close()
    import redis

    server = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    leftovers = list(server.scan_iter(match=f"{prefix}*"))
    if leftovers:
        server.delete(*leftovers)


def _video_bytes(seed: int) -> bytes:
    return b"\x00\x00\x00\x20ftypisom" + bytes([seed]) + bytes(range(256)) * 4


def test_api_only_mode_queues_uploads_for_celery_and_checks_redis(
    distributed: Callable[..., TestClient],
) -> None:
    client = distributed()
    ready = client.get("/readyz").json()
    assert ready["mode"] == "distributed" and ready["checks"]["redis"] == "ok"
    assert client.post("/collections", json={"name": "dist"}).status_code == 201
    videos = seed_clips(client, "dist")
    top = client.post("/search", json={"collection": "dist", "query": CAPTIONS[1]}).json()["results"][0]
    assert top["video_id"] == videos[CAPTIONS[1]]

    accepted = client.post(
        "/collections/dist/videos", files={"file": ("a.mp4", _video_bytes(0), "video/mp4")}
    )
    assert accepted.status_code == 202, accepted.text
    job = client.get(f"/jobs/{accepted.json()['job_id']}").json()
    assert job["stage"] == "queued"  # waiting in Redis for a Celery worker
    assert services_of(client).jobs.get(accepted.json()["job_id"]) is not None
    metrics = client.get("/metrics").text  # the task waits in the broker: no worker runs here
    assert 'videoseek_queue_depth{queue="ingest"} 1.0' in metrics
    assert 'videoseek_queue_depth{queue="embed"} 0.0' in metrics


def test_a_full_celery_ingest_queue_refuses_uploads_with_retry_after(
    distributed: Callable[..., TestClient],
) -> None:
    client = distributed(queue_size=1)
    assert client.post("/collections", json={"name": "busy"}).status_code == 201
    first = client.post("/collections/busy/videos", files={"file": ("a.mp4", _video_bytes(1), "video/mp4")})
    assert first.status_code == 202, first.text
    refused = client.post("/collections/busy/videos", files={"file": ("b.mp4", _video_bytes(2), "video/mp4")})
    assert refused.status_code == 429, refused.text
    assert (
        int(refused.headers["retry-after"]) > 0 and "waiting for an ingest worker" in refused.json()["reason"]
    )
    # Nothing else is lost: the accepted job still waits, and the refused file was not kept.
    assert client.get(f"/jobs/{first.json()['job_id']}").json()["stage"] == "queued"
    videos = client.get("/collections/busy").json()
    assert videos["videos"] in (0, None)


def test_admin_tasks_over_http_go_to_celery_and_their_state_comes_from_the_result_backend(
    distributed: Callable[..., TestClient], tmp_path: Path
) -> None:
    from worker.celery_app import QueueDepths
    from worker.names import QUEUE_TRAIN

    client = distributed()
    assert client.post("/collections", json={"name": "dist"}).status_code == 201
    seed_clips(client, "dist")
    settings = services_of(client).settings
    runtime = distributed_runtime(client)
    depths = QueueDepths(settings)
    started = client.post("/collections/dist/reindex", json={"adapter": None, "allow_missing": True})
    assert started.status_code == 202, started.text
    task_id = started.json()["task_id"]
    assert task_id.startswith("dist.") and depths(QUEUE_TRAIN) == 1  # waits for a worker
    for video in ("a.mp4", "b.mp4"):
        (tmp_path / video).write_bytes(b"frames")
    manifest = tmp_path / "captions.jsonl"
    manifest.write_text(
        "".join(json.dumps({"video": f"{v}.mp4", "caption": f"clip {v}"}) + "\n" for v in "ab")
    )
    busy = client.post("/collections/dist/retrain", json={"data": str(manifest)})
    assert busy.status_code == 409 and task_id in busy.json()["reason"]  # one task per collection
    assert client.post("/collections", json={"name": "other"}).status_code == 201
    seed_clips(client, "other")
    retrain = client.post("/collections/other/retrain", json={"data": str(manifest)})
    assert retrain.status_code == 202 and depths(QUEUE_TRAIN) == 2, retrain.text

    def status(of: str = task_id) -> dict[str, Any]:
        response = client.get(f"/tasks/{of}")
        assert response.status_code == 200, response.text
        return response.json()

    assert (status()["state"], status()["kind"]) == ("queued", None)  # Celery keeps no arguments
    backend = runtime.app.backend  # what a train worker writes, on the same Redis
    progress = {"stage": "embedding", "videos_done": 1, "videos_total": 3, "clips": 3, "kind": "reindex"}
    backend.store_result(task_id, progress, "PROGRESS")
    assert (status()["state"], status()["kind"], status()["progress"]) == ("running", "reindex", progress)
    backend.store_result(
        task_id, {"collection": "dist", "videos": 3, "clips": 9, "kind": "reindex"}, "SUCCESS"
    )
    done = status()
    assert done["state"] == "done" and done["result"]["clips"] == 9 and done["reason"] is None
    other = "dist." + "f" * 32  # a finished task's state is final: failure is shown on another one
    backend.mark_as_failure(other, RuntimeError("no cached frames for 3 videos"))
    failed = status(other)
    assert failed["state"] == "failed" and failed["reason"] == "RuntimeError: no cached frames for 3 videos"
    assert client.get("/tasks/elsewhere." + "0" * 32).json()["state"] == "queued"  # Celery's PENDING


def test_a_distributed_task_cancelled_while_queued_frees_its_collection_and_ends_as_a_worker_takes_it(
    distributed: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    from videoseek.cancel import TaskCancelled
    from worker.cancel_flags import START_DUPLICATE, START_RUN
    from worker.names import TASK_REINDEX

    client = distributed()
    assert client.post("/collections", json={"name": "dist"}).status_code == 201
    seed_clips(client, "dist")
    settings = services_of(client).settings
    runtime = distributed_runtime(client)
    slots = runtime.admin.slots
    task_id = client.post("/collections/dist/reindex", json={"adapter": None}).json()["task_id"]
    assert slots.holder("dist") == task_id  # the slot the API took while the task waits
    cancelled = client.post(f"/tasks/{task_id}/cancel")
    assert cancelled.status_code == 202, cancelled.text
    assert (cancelled.json()["state"], cancelled.json()["cancel_requested"]) == ("queued", True)
    assert client.get(f"/tasks/{task_id}").json()["cancel_requested"] is True
    assert slots.holder("dist") is None  # not started: its collection is free at once
    next_id = client.post("/collections/dist/reindex", json={"adapter": None}).json()["task_id"]

    # A train worker takes the cancelled message: it ends at once, leaving the next task's slot alone.
    ran: list[str] = []
    monkeypatch.setattr("videoseek.reindex.reindex_to_version", lambda *a, **k: ran.append("ran"))
    task = runtime.app.tasks[TASK_REINDEX]  # run here as a worker would (its process state: this app's)
    outcome = task.apply(args=["dist", None], task_id=task_id)
    assert isinstance(outcome.result, TaskCancelled) and ran == [] and slots.holder("dist") == next_id
    runtime.app.backend.mark_as_failure(task_id, outcome.result)  # what the worker stores
    final = client.get(f"/tasks/{task_id}").json()
    assert final["state"] == "cancelled" and "cancelled by an admin" in final["reason"], final
    again = client.post(f"/tasks/{task_id}/cancel")
    assert again.status_code == 409 and "has ended (cancelled)" in again.json()["reason"]
    listed = client.get("/collections/dist/tasks").json()["tasks"]  # newest first, states from the backend
    assert [(t["task_id"], t["state"]) for t in listed] == [(next_id, "queued"), (task_id, "cancelled")]

    # The next one runs; a second delivery of its message (the broker's visibility timeout) ends untraced.
    queued = [
        json.loads(m)
        for m in redis_client(settings).lrange(f"{settings.worker.redis_prefix}celery:train", 0, -1)
    ]
    assert len(queued) == 2 and all(m["headers"]["expires"] for m in queued)  # never outlives a cancel flag
    task.apply(args=["dist", None], task_id=next_id)
    assert ran == ["ran"] and slots.holder("dist") is None
    assert slots.take("dist", "dist." + "d" * 32) == "dist." + "d" * 32  # another task has it now
    assert task.apply(args=["dist", None], task_id=next_id).state == "IGNORED"
    assert ran == ["ran"] and slots.holder("dist") == "dist." + "d" * 32

    # Once a task has started, a cancel leaves the slot to it (it frees it as it ends) ...
    flags = runtime.admin.cancel_flags
    started = "films." + "e" * 32
    assert slots.take("films", started) == started and flags.start(started, "films") == START_RUN
    check = flags.check_for(started)
    check()
    assert flags.request(started, "films") is False and slots.holder("films") == started
    with pytest.raises(TaskCancelled):  # ... and stops at its next cancel point
        check()
    assert flags.start(started, "films") == START_DUPLICATE and slots.holder("films") == started


def distributed_runtime(client: TestClient) -> DistributedRuntime:
    runtime = services_of(client).runtime
    assert isinstance(runtime, DistributedRuntime)
    return runtime


def redis_client(settings: Any) -> Any:
    import redis

    return redis.Redis.from_url(settings.redis_url, decode_responses=True)


def test_recent_tasks_keep_the_newest_per_collection_for_as_long_as_their_state_may_be_known(
    distributed: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    import redis

    from worker.admin_state import ADMIN_TASK_EXPIRES_S
    from worker.recent_tasks import RecentTasks

    client = distributed()
    settings = services_of(client).settings
    runtime = distributed_runtime(client)
    recent = RecentTasks(redis_client(settings), f"{settings.worker.redis_prefix}recent-test:", 100, keep_n=3)
    for i in range(5):
        recent.add("films", f"films.{i}", now=1000.0 + i)
    recent.add("cars", "cars.0", now=1000.0)

    def ids(collection: str, limit: int, now: float) -> list[str]:
        return [task_id for task_id, _ in recent.newest(collection, limit, now=now)]

    assert ids("films", 10, now=1010.0) == ["films.4", "films.3", "films.2"]  # at most 3 kept
    assert ids("films", 1, now=1010.0) == ["films.4"]
    assert ids("films", 10, now=1102.5) == ["films.4", "films.3"]  # kept 100 s here
    assert ids("cars", 10, now=1010.0) == ["cars.0"]

    # What the API lists: a PENDING id is queued only if it never started and may still be waiting.
    assert client.post("/collections", json={"name": "dist"}).status_code == 201
    listed = runtime.admin.recent
    expired, started, queued = ("dist." + c * 32 for c in "123")
    listed.add("dist", expired, now=time.time() - ADMIN_TASK_EXPIRES_S - 60)
    listed.add("dist", started)
    listed.add("dist", queued)
    assert runtime.admin.cancel_flags.start(started, "dist") == 1  # its result has since expired
    shown = client.get("/collections/dist/tasks").json()["tasks"]
    assert [(t["task_id"], t["state"]) for t in shown] == [(queued, "queued")]

    # A queued task that cannot be listed (Redis refused that write) is still a 202 with its id.
    class Refusing:
        def add(self, *_: object) -> None:
            raise redis.ConnectionError("gone for a moment")

    seed_clips(client, "dist")
    with monkeypatch.context() as patched:
        patched.setattr(runtime.tasks, "_admin", dataclasses.replace(runtime.admin, recent=Refusing()))
        assert client.post("/collections/dist/reindex", json={"adapter": None}).status_code == 202

    # A deleted collection's tasks are not a new one's of the same name.
    assert client.delete("/collections/dist").status_code == 200
    assert client.post("/collections", json={"name": "dist"}).status_code == 201
    assert client.get("/collections/dist/tasks").json() == {"tasks": []}


def test_at_start_a_replica_removes_only_partial_uploads_idle_for_an_hour(
    distributed: Callable[..., TestClient], tmp_path: Path
) -> None:
    import os

    from service.uploads import STALE_UPLOAD_S

    uploads = tmp_path / "data" / "uploads"  # the make_client fixture's data dir, shared by every replica
    uploads.mkdir(parents=True)
    dead, live = uploads / "dead.part", uploads / "live.part"
    dead.write_bytes(b"a killed process's half upload")
    live.write_bytes(b"another replica is receiving this one")
    an_hour_ago = time.time() - STALE_UPLOAD_S - 60
    os.utime(dead, (an_hour_ago, an_hour_ago))
    distributed()
    assert not dead.exists() and live.exists()


def test_training_pairs_live_in_redis_with_the_same_api_and_go_with_their_collection(
    distributed: Callable[..., TestClient],
) -> None:
    from worker.redis_pairs import RedisPairStore

    client = distributed()
    assert isinstance(services_of(client).context.pairs, RedisPairStore)
    assert client.post("/collections", json={"name": "dist"}).status_code == 201
    videos = seed_clips(client, "dist")
    first = videos[CAPTIONS[0]]
    added = client.post(
        "/collections/dist/captions",
        json={"captions": [{"video_id": first, "text": "a red ball", "start_s": 1, "end_s": 3}]},
    )
    assert added.status_code == 201 and added.json()["added"] == 1, added.text
    unknown = client.post(
        "/collections/dist/captions", json={"captions": [{"video_id": "ee" * 32, "text": "t"}]}
    )
    assert unknown.status_code == 422 and unknown.json()["code"] == "unknown_video"
    top = client.post("/search", json={"collection": "dist", "query": CAPTIONS[1]}).json()["results"][0]
    feedback = {"query": CAPTIONS[1], "clip_id": top["clip_id"], "relevant": False}
    assert client.post("/collections/dist/feedback", json=feedback).json()["kind"] == "feedback_negative"
    upload = client.post(
        "/collections/dist/videos",
        files={"file": ("a.mp4", _video_bytes(3), "video/mp4")},
        data={"captions": json.dumps([{"text": "sent with the upload"}])},
    )
    assert upload.status_code == 202, upload.text  # queued for a Celery worker; its caption is listed now
    texts = {p["text"] for p in client.get("/collections/dist/captions").json()["pairs"]}
    assert texts == {"a red ball", "sent with the upload"}
    counts = client.get("/collections/dist/feedback").json()["counts"]
    assert counts == {"caption": 2, "feedback_positive": 0, "feedback_negative": 1, "subtitle": 0}

    assert client.delete("/collections/dist").status_code == 200
    prefix = services_of(client).settings.worker.redis_prefix
    assert list(redis_client(services_of(client).settings).scan_iter(match=f"{prefix}pairs:dist:*")) == []


def test_versions_and_rollback_over_http_read_the_server_store_and_queue_a_celery_rollback(
    distributed: Callable[..., TestClient],
) -> None:
    from videoseek.reindex import reindex_to_version
    from worker.celery_app import QueueDepths
    from worker.names import QUEUE_TRAIN

    client = distributed()
    assert client.post("/collections", json={"name": "dist"}).status_code == 201
    seed_clips(client, "dist")
    services = services_of(client)
    depths = QueueDepths(services.settings)
    refused = client.post("/collections/dist/rollback", json={})
    assert refused.status_code == 409 and refused.json()["code"] == "no_version_to_restore", refused.text
    assert depths(QUEUE_TRAIN) == 0  # refused before anything was queued

    first = client.get("/collections/dist/versions").json()["versions"]
    # A switch as a train worker makes it (on the shared store): the first version is kept for rollback.
    reindex_to_version(services.context, "dist", None, allow_missing=True)
    versions = client.get("/collections/dist/versions").json()["versions"]
    assert [v["live"] for v in versions] == [True, False], versions
    assert versions[1]["physical"] == first[0]["physical"]

    started = client.post("/collections/dist/rollback", json={})
    assert started.status_code == 202 and started.json()["kind"] == "rollback", started.text
    assert depths(QUEUE_TRAIN) == 1  # waits for a train worker
    busy = client.post("/collections/dist/rollback", json={})
    assert busy.status_code == 409 and started.json()["task_id"] in busy.json()["reason"]
