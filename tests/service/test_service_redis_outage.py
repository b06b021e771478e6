"""A hung Redis (frozen with SIGSTOP: what a network partition looks like to a client) costs the API's Redis
routes a quick 503 with Retry-After, and never slows a search, which needs no Redis.

Each test runs its own ``redis-server`` so that freezing it disturbs no other test.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from service_helpers import CAPTIONS, runtime_for, seed_clips, settings_for, wait_ready
from starlette.types import Receive, Scope, Send

from service.main import create_app

# A request on a frozen Redis must answer well within this: the API gives up on Redis after 2 s by default
# (without that limit, job status took 30 s and task status waited for as long as Redis stayed frozen).
ANSWER_BOUND_S = 8.0
# How long a test waits for something that, when the code is right, happens at once.
PATIENCE_S = 60.0


@dataclass
class PrivateRedis:
    url: str
    process: subprocess.Popen[bytes]

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """Redis stops answering (its process is stopped) but keeps its connections open, then resumes."""
        os.kill(self.process.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.process.pid, signal.SIGCONT)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _start_redis(binary: str) -> tuple[subprocess.Popen[bytes], str]:
    import redis

    for _ in range(5):  # the free port may be taken before redis-server binds it: then try another
        port = _free_port()
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        process = subprocess.Popen(
            [*args, "--daemonize", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        url = f"redis://127.0.0.1:{port}/0"
        client = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=1.0)
        deadline = time.monotonic() + PATIENCE_S
        while process.poll() is None and time.monotonic() < deadline:
            try:
                client.ping()
                client.close()
                return process, url
            except redis.ConnectionError:
                time.sleep(0.05)
        process.kill()
        process.wait()
    raise RuntimeError("could not start a private redis-server")


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    """A redis-server of this test's own, on a free port; resumed and stopped at the end whatever happened."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    process, url = _start_redis(binary)
    try:
        yield PrivateRedis(url, process)
    finally:
        os.kill(process.pid, signal.SIGCONT)
        process.terminate()
        try:
            process.wait(timeout=PATIENCE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class RequestCounter:
    """ASGI wrapper counting the HTTP requests that have reached the app (to know they are all in flight)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.entered = 0
        self._lock = threading.Lock()

    @property
    def state(self) -> Any:
        """The app's state, where the helpers find its services."""
        return self.app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            with self._lock:
                self.entered += 1
        await self.app(scope, receive, send)


@dataclass
class OutageApp:
    client: TestClient
    counter: RequestCounter
    redis: PrivateRedis


@pytest.fixture
def outage_app(
    private_redis: PrivateRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., OutageApp]]:
    """Distributed-mode API apps on the private Redis; qdrant-client's local mode stands in for the server."""
    from videoseek.store.server import ServerClipStore

    local = ServerClipStore.local()
    with ExitStack() as stack:

        def make(**worker: Any) -> OutageApp:
            settings = settings_for(
                tmp_path / "data",
                redis_url=private_redis.url,
                qdrant={"url": "http://qdrant.invalid:6333"},
                worker={"redis_prefix": f"outage-{uuid.uuid4().hex[:8]}:", **worker},
            )
            counter = RequestCounter(create_app(runtime_for(settings, local)))
            client = TestClient(counter, client=("198.51.100.3", 9))  # no keys outside embedded mode
            stack.enter_context(client)
            wait_ready(client)
            return OutageApp(client, counter, private_redis)

        yield make
    local.close()


def _video_bytes(seed: int) -> bytes:
    return b"\x00\x00\x00\x20ftypisom" + bytes([seed]) + bytes(range(256)) * 4


def _upload(client: TestClient, collection: str, seed: int) -> httpx.Response:
    files = {"file": (f"v{seed}.mp4", _video_bytes(seed), "video/mp4")}
    return client.post(f"/collections/{collection}/videos", files=files)


@dataclass(frozen=True)
class Live:
    """What exists before Redis freezes: a seeded collection, an ingest job, an admin task."""

    job_id: str
    video_id: str
    task_id: str


def _set_up(client: TestClient) -> Live:
    assert client.post("/collections", json={"name": "live"}).status_code == 201
    seed_clips(client, "live")
    accepted = _upload(client, "live", 0)
    assert accepted.status_code == 202, accepted.text
    started = client.post("/collections/live/reindex", json={"adapter": None, "allow_missing": True})
    assert started.status_code == 202, started.text
    return Live(accepted.json()["job_id"], accepted.json()["video_id"], started.json()["task_id"])


def _search(client: TestClient) -> httpx.Response:
    return client.post("/search", json={"collection": "live", "query": CAPTIONS[1]})


def _answers_soon(calls: dict[str, Callable[[], httpx.Response]]) -> dict[str, httpx.Response]:
    """Every call's response, made at once; a failure if any takes past ANSWER_BOUND_S."""
    pool = ThreadPoolExecutor(max_workers=len(calls))
    try:
        futures = {name: pool.submit(call) for name, call in calls.items()}
        _, late = wait(futures.values(), timeout=ANSWER_BOUND_S)
        slow = [name for name, future in futures.items() if future in late]
        assert not slow, f"no answer within {ANSWER_BOUND_S} s while Redis is frozen: {slow}"
        return {name: future.result() for name, future in futures.items()}
    finally:
        pool.shutdown(wait=False)  # a call stuck on the frozen Redis must not hold the test here


def _manifest(directory: Path) -> Path:
    """Captions of two clips, enough for a retrain request to pass its checks and be queued."""
    for video in ("a.mp4", "b.mp4"):
        (directory / video).write_bytes(b"frames")
    manifest = directory / "captions.jsonl"
    lines = [json.dumps({"video": f"{v}.mp4", "caption": f"clip {v}"}) for v in "ab"]
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def test_with_redis_frozen_every_route_that_needs_it_answers_503_with_retry_after_at_once(
    outage_app: Callable[..., OutageApp], tmp_path: Path
) -> None:
    app = outage_app()
    client, live, manifest = app.client, _set_up(app.client), _manifest(tmp_path)
    routes: dict[str, Callable[[], httpx.Response]] = {
        "job status": lambda: client.get(f"/jobs/{live.job_id}"),
        "task status": lambda: client.get(f"/tasks/{live.task_id}"),
        "task cancel": lambda: client.post(f"/tasks/{live.task_id}/cancel"),
        "task list": lambda: client.get("/collections/live/tasks"),
        "reindex": lambda: client.post("/collections/live/reindex", json={"adapter": None}),
        "retrain": lambda: client.post("/collections/live/retrain", json={"data": str(manifest)}),
        "upload": lambda: _upload(client, "live", 1),
        "video": lambda: client.get(f"/collections/live/videos/{live.video_id}"),
        "video delete": lambda: client.delete(f"/collections/live/videos/{live.video_id}"),
        "readiness": lambda: client.get("/readyz"),
    }
    with app.redis.frozen():
        for route, response in _answers_soon(routes).items():
            assert response.status_code == 503, (route, response.text)
            assert int(response.headers["retry-after"]) > 0, route
            body = response.json()
            if route == "readiness":
                assert body["checks"]["redis"].startswith("unavailable"), body
            else:
                assert body["code"] in ("redis_unavailable", "broker_unavailable"), (route, body)
        during = _answers_soon({"metrics": lambda: client.get("/metrics"), "search": lambda: _search(client)})
        # Still scraped: the Celery queues read as unknown.
        assert 'videoseek_queue_depth{queue="ingest"} NaN' in during["metrics"].text
        assert during["search"].status_code == 200 and during["search"].json()["results"]

    # Redis is back: every route works again, and what was there before is still there.
    assert client.get(f"/jobs/{live.job_id}").json()["stage"] == "queued"
    assert client.get(f"/tasks/{live.task_id}").json()["state"] == "queued"
    assert client.get("/readyz").status_code == 200
    assert _upload(client, "live", 2).status_code == 202
    assert 'videoseek_queue_depth{queue="ingest"} 2.0' in client.get("/metrics").text


def test_searches_do_not_wait_behind_requests_blocked_on_a_frozen_redis(
    outage_app: Callable[..., OutageApp],
) -> None:
    # A long Redis timeout: the blocked requests stay blocked until Redis resumes, whatever this machine's speed.
    app = outage_app(api_redis_timeout_s=PATIENCE_S * 2)
    client, live = app.client, _set_up(app.client)
    blocked_calls: list[Callable[[], httpx.Response]] = [
        *[lambda: client.get(f"/jobs/{live.job_id}")] * 40,
        *[lambda: client.get(f"/tasks/{live.task_id}")] * 5,
        *[lambda: client.get("/readyz")] * 3,
        *[lambda: client.get("/metrics")] * 2,
    ]
    with ThreadPoolExecutor(max_workers=len(blocked_calls) + 1) as pool:
        with app.redis.frozen():
            before = app.counter.entered
            blocked: list[Future[httpx.Response]] = [pool.submit(call) for call in blocked_calls]
            deadline = time.monotonic() + PATIENCE_S
            while app.counter.entered < before + len(blocked) and time.monotonic() < deadline:
                time.sleep(0.01)  # until every blocked request is inside the app
            assert app.counter.entered == before + len(blocked)
            search = pool.submit(_search, client)
            try:
                searched = search.result(timeout=PATIENCE_S / 2)
            except TimeoutError:
                pytest.fail("a search waited behind requests blocked on the frozen Redis")
            assert searched.status_code == 200 and searched.json()["results"]
            assert not any(future.done() for future in blocked)  # they really were blocked meanwhile
        answers = [future.result(timeout=PATIENCE_S) for future in blocked]
    assert [answer.status_code for answer in answers] == [200] * len(blocked)
