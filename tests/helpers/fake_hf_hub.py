"""A local stand-in for the Hugging Face hub's file endpoint, enough for huggingface_hub's real ``hf_hub_download``.

It answers as huggingface.co does for a file stored with Git LFS: ``HEAD``/``GET
/{repo}/resolve/{revision}/{filename}`` give 302 with the file's metadata (``X-Repo-Commit``,
``X-Linked-Etag`` = its sha256, ``X-Linked-Size``, ``ETag``) and a ``Location`` on another origin, the "CDN",
which serves the bytes with their ``Content-Length``. A file the repository lacks is 404 with
``X-Error-Code: EntryNotFound`` (so the client tries its next file name); an unknown repository is
``RepoNotFound``. Point a process at it with ``HF_ENDPOINT=hub.endpoint``. Every request is recorded.

``corrupt=True`` serves other bytes of the same length than the checksum announces (a damaged download).
"""

from __future__ import annotations

import hashlib
import io
import socket
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import open_clip
import torch
from adapter_kit import TINY_NAME, register_tiny_configs
from safetensors.torch import save

COMMIT = "0123456789abcdef0123456789abcdef01234567"
HUB_REPO = "videoseek-test/tiny-clip"
HUB_TAG = "fakehub"
HUB_SPEC = f"{TINY_NAME}:{HUB_TAG}"


@dataclass
class FakeHub:
    """Repositories ``{repo_id: {filename: bytes}}`` served over HTTP on 127.0.0.1 (hub and CDN ports)."""

    repos: dict[str, dict[str, bytes]]
    corrupt: bool = False
    requests: list[tuple[str, str]] = field(default_factory=list)
    endpoint: str = ""
    cdn: str = ""
    _blobs: dict[str, bytes] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, method: str, path: str) -> None:
        with self._lock:
            self.requests.append((method, path))

    def blob_requests(self) -> list[tuple[str, str]]:
        return [r for r in self.requests if r[1].startswith("/blobs/")]


def tiny_weights(kind: str = "safetensors", seed: int = 3) -> bytes:
    """Random weights of the tiny test architecture, as a hub repository would hold them."""
    with tempfile.TemporaryDirectory(prefix="tiny-configs-") as directory:  # open_clip reads them at once
        register_tiny_configs(Path(directory))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.create_model(TINY_NAME)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if kind == "safetensors":
        return bytes(save(state))
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _handler(hub: FakeHub, role: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

        def _answer(self, body: bool) -> None:
            hub.record(self.command, self.path)
            if role == "cdn":
                self._blob(body)
            else:
                self._resolve()

        def _resolve(self) -> None:
            head, sep, filename = self.path.partition("/resolve/")
            repo_id = head.strip("/")
            revision, _, filename = filename.partition("/")
            files = hub.repos.get(repo_id)
            if not sep or files is None:
                self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
                return
            content = files.get(filename)
            if content is None or revision not in ("main", COMMIT):
                self._error(404, "EntryNotFound", f"{filename} does not exist on {revision}")
                return
            sha256 = hashlib.sha256(content).hexdigest()
            hub._blobs[sha256] = content
            self.send_response(302)
            self.send_header("Location", f"{hub.cdn}/blobs/{sha256}")
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("X-Linked-Etag", f'"{sha256}"')
            self.send_header("X-Linked-Size", str(len(content)))
            self.send_header("ETag", '"' + hashlib.sha1(content).hexdigest() + '"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _blob(self, body: bool) -> None:
            content = hub._blobs.get(self.path.removeprefix("/blobs/"))
            if content is None:
                self._error(404, "EntryNotFound", "no such blob")
                return
            if hub.corrupt:
                content = bytes(b ^ 0xFF for b in content[:64]) + content[64:]
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            if body:
                self.wfile.write(content)

        def _error(self, status: int, code: str, message: str) -> None:
            payload = f'{{"error": "{message}"}}'.encode()
            self.send_response(status)
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", message)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

    return Handler


@contextmanager
def serve_fake_hub(repos: dict[str, dict[str, bytes]], corrupt: bool = False) -> Iterator[FakeHub]:
    """The fake hub on two free ports of 127.0.0.1 (hub and CDN), for the ``with`` block."""
    hub = FakeHub(repos=repos, corrupt=corrupt)
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub, role)) for role in ("hub", "cdn")]
    hub.endpoint, hub.cdn = (f"http://127.0.0.1:{s.server_address[1]}" for s in servers)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    try:
        yield hub
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


@contextmanager
def silent_server() -> Iterator[tuple[str, list[str]]]:
    """A TCP port that reads requests and never answers: a hub behind a network that drops its replies.

    Yields its URL and the request lines it received (what a client tried, and how often)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    received: list[str] = []
    connections: list[socket.socket] = []
    stop = threading.Event()

    def read(connection: socket.socket) -> None:
        connection.settimeout(0.2)
        data = b""
        while not stop.is_set() and b"\r\n" not in data:
            try:
                chunk = connection.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            data += chunk
        if b"\r\n" in data:
            received.append(data.split(b"\r\n", 1)[0].decode("latin-1"))

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            connections.append(connection)
            threading.Thread(target=read, args=(connection,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", received
    finally:
        stop.set()
        thread.join()
        for connection in connections:
            connection.close()
        listener.close()
