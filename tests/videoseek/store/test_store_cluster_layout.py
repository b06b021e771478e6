"""The cluster layout settings reach the Qdrant server in the request that creates each collection.

No Qdrant server runs here and qdrant-client's local mode ignores cluster arguments, so a stand-in speaks
just enough of Qdrant's REST API for the server store to create a collection, and records what it was sent:
the real client serialises the real request."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from videoseek.settings import QdrantSettings, Settings
from videoseek.store.factory import open_store

RESULTS: dict[tuple[str, str], Any] = {
    ("GET", "/aliases"): {"aliases": []},
    ("GET", "/collections"): {"collections": []},
}


class _StandIn(BaseHTTPRequestHandler):
    received: list[tuple[str, str, Any]]

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        path = self.path.split("?", 1)[0]
        self.received.append((self.command, path, body))
        if path == "/":  # the client's version check: answered like the compose file's server
            reply: Any = {"title": "qdrant - vector search engine", "version": "1.20.0"}
        elif path.endswith("/index"):
            reply = {"result": {"operation_id": 0, "status": "completed"}, "status": "ok", "time": 0.0}
        else:
            reply = {"result": RESULTS.get((self.command, path), True), "status": "ok", "time": 0.0}
        payload = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_PUT = do_POST = _answer  # noqa: N815 - http.server's naming

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def stand_in() -> Iterator[tuple[str, list[tuple[str, str, Any]]]]:
    received: list[tuple[str, str, Any]] = []
    handler = type("Handler", (_StandIn,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
        # the client checks the server's version from a thread of its own: answer it before stopping
        deadline = time.monotonic() + 10
        while ("GET", "/", None) not in received and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _create_request(received: list[tuple[str, str, Any]]) -> dict[str, Any]:
    creates = [
        body for method, path, body in received if method == "PUT" and path == "/collections/vs__clips__1"
    ]
    assert len(creates) == 1, received
    return dict(creates[0])


def test_cluster_settings_are_sent_when_the_server_store_creates_a_collection(
    stand_in: tuple[str, list[tuple[str, str, Any]]],
) -> None:
    url, received = stand_in
    qdrant = QdrantSettings(url=url, shard_number=6, replication_factor=2, write_consistency_factor=2)
    store = open_store(Settings(qdrant=qdrant))
    try:
        store.create_collection("clips", 8, model="m")
    finally:
        store.close()
    body = _create_request(received)
    assert (body["shard_number"], body["replication_factor"], body["write_consistency_factor"]) == (6, 2, 2)
    assert body["on_disk_payload"] is True
    assert set(body["vectors"]) == {"frames", "pooled"}  # the scale layout, unchanged by the cluster settings


def test_unset_cluster_settings_leave_the_servers_defaults(
    stand_in: tuple[str, list[tuple[str, str, Any]]],
) -> None:
    url, received = stand_in
    store = open_store(Settings(qdrant=QdrantSettings(url=url)))
    try:
        store.create_collection("clips", 8, model="m")
    finally:
        store.close()
    body = _create_request(received)
    assert body.get("shard_number") is None and body.get("replication_factor") is None
    assert body["on_disk_payload"] is True


def test_cluster_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDEOSEEK_QDRANT__SHARD_NUMBER", "4")
    monkeypatch.setenv("VIDEOSEEK_QDRANT__REPLICATION_FACTOR", "2")
    assert Settings().qdrant.collection_layout() == {
        "on_disk_payload": True,
        "shard_number": 4,
        "replication_factor": 2,
    }


@pytest.mark.parametrize(
    ("values", "names"),
    [
        ({"shard_number": 0}, "shard_number"),
        ({"replication_factor": 0}, "replication_factor"),
        ({"replication_factor": 1, "write_consistency_factor": 2}, "exceeds replication_factor"),
        ({"write_consistency_factor": 2}, "exceeds replication_factor"),
    ],
)
def test_impossible_cluster_settings_are_refused_with_the_fix(values: dict[str, int], names: str) -> None:
    with pytest.raises(ValueError, match=names):
        QdrantSettings(url="http://qdrant:6333", **values)
