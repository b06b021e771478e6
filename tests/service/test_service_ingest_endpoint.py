"""``POST /ingest``: an upload naming its collection, an http(s) URL the server downloads (every hop checked), or
a file under the server root; each ends as the same job an upload to ``/collections/{name}/videos`` makes."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from service_helpers import services_of
from video_factory import write_video

from service.errors import FetchFailed, FetchTimeout, SourceRefused
from service.url_fetch import fetch_url, refusal
from videoseek.settings import load_settings


@dataclass
class Site:
    """A throwaway HTTP server on 127.0.0.1 (what a URL ingest downloads from)."""

    url: str
    video: bytes
    hosts: list[str] = field(default_factory=list)  # the Host header of every request, in order
    release: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    video = write_video(tmp_path / "served.mp4", n=20, rate=10, size=(64, 48)).read_bytes()
    state = Site("", video)

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            pass

        def do_GET(self) -> None:  # http.server calls it by this name
            state.hosts.append(self.headers.get("Host", ""))
            routes: dict[str, Callable[[], None]] = {
                "/videos/garden%20cam.mp4": lambda: self._send(200, state.video),
                "/hop": lambda: self._redirect("/videos/garden%20cam.mp4"),
                "/to-ftp": lambda: self._redirect("ftp://127.0.0.1/a.mp4"),
                "/to-nowhere": lambda: self._redirect("http://0.0.0.0:9/a.mp4"),
                "/named": lambda: self._send(
                    200, state.video, {"Content-Disposition": 'attachment; filename="dog.mp4"'}
                ),
                "/huge": lambda: self._send(200, b"x" * 10, {"Content-Length": str(10**12)}),
                "/stall": self._stall,
            }
            routes.get(self.path, lambda: self._send(404, b"not here"))()

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            headers = headers or {}
            for name, value in headers.items():
                self.send_header(name, value)
            if "Content-Length" not in headers:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _redirect(self, location: str) -> None:
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _stall(self) -> None:
            state.release.wait(30)  # answers nothing until the test is over

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()


def _settle(client: TestClient) -> None:
    assert services_of(client).runtime.runner.join(timeout=120)  # type: ignore[attr-defined]


def _job(client: TestClient, accepted: Any) -> dict[str, Any]:
    assert accepted.status_code == 202, accepted.text
    _settle(client)
    job = client.get(accepted.json()["job_url"]).json()
    assert isinstance(job, dict)
    return job


def test_a_multipart_ingest_names_its_collection_and_makes_the_same_job_as_an_upload(
    client: TestClient, tmp_path: Path
) -> None:
    assert client.post("/collections", json={"name": "pets"}).status_code == 201
    data = write_video(tmp_path / "dog.mp4", n=20, rate=10, size=(64, 48)).read_bytes()
    job = _job(
        client,
        client.post(
            "/ingest",
            data={"collection": "pets", "metadata": '{"camera": "garden"}'},
            files={"file": ("dog.mp4", data, "video/mp4")},
        ),
    )
    assert (job["collection"], job["source"], job["stage"]) == ("pets", "dog.mp4", "done")
    again = client.post("/collections/pets/videos", files={"file": ("same.mp4", data, "video/mp4")}).json()
    assert again["duplicate"] and again["video_id"] == job["video_id"]  # one collection, one dedup
    video = client.get(f"/collections/pets/videos/{job['video_id']}").json()
    assert video["metadata"] == {"camera": "garden"} and video["state"] == "indexed"


def test_a_multipart_ingest_refuses_a_missing_or_unknown_collection_and_keeps_nothing(
    client: TestClient, tmp_path: Path
) -> None:
    data = write_video(tmp_path / "dog.mp4", n=10, rate=10, size=(64, 48)).read_bytes()
    missing = client.post("/ingest", files={"file": ("dog.mp4", data, "video/mp4")})
    assert missing.status_code == 422 and "'collection'" in missing.json()["reason"]
    unknown = client.post(
        "/ingest", data={"collection": "nope"}, files={"file": ("dog.mp4", data, "video/mp4")}
    )
    assert unknown.status_code == 404 and unknown.json()["code"] == "collection_not_found"
    bad = client.post(
        "/ingest", data={"collection": "Not A Name"}, files={"file": ("d.mp4", data, "video/mp4")}
    )
    assert bad.status_code == 422 and "collection name" in bad.json()["reason"]
    neither = client.post("/ingest", content=b"x", headers={"Content-Type": "text/plain"})
    assert neither.status_code == 415
    assert list(services_of(client).layout.uploads_dir.glob("*")) == []


def test_a_key_limited_to_other_collections_cannot_ingest_into_this_one(
    make_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    keys = [
        {"key": "admin", "scopes": ["admin"]},
        {"key": "cars-only", "scopes": ["ingest"], "collections": ["cars"]},
    ]
    client = make_client(api_keys=keys)
    assert (
        client.post("/collections", json={"name": "pets"}, headers={"X-API-Key": "admin"}).status_code == 201
    )
    data = write_video(tmp_path / "dog.mp4", n=10, rate=10, size=(64, 48)).read_bytes()
    form = client.post(
        "/ingest",
        data={"collection": "pets"},
        files={"file": ("dog.mp4", data, "video/mp4")},
        headers={"X-API-Key": "cars-only"},
    )
    assert form.status_code == 403
    url = client.post(
        "/ingest", json={"collection": "pets", "url": "http://x/a.mp4"}, headers={"X-API-Key": "cars-only"}
    )
    assert url.status_code == 403
    assert list(services_of(client).layout.uploads_dir.glob("*")) == []


def test_a_url_is_downloaded_and_ingested_when_private_addresses_are_allowed(
    make_client: Callable[..., TestClient], site: Site
) -> None:
    client = make_client(ingest={"allow_private_urls": True})
    client.post("/collections", json={"name": "pets"})
    job = _job(
        client,
        client.post("/ingest", json={"collection": "pets", "url": f"{site.url}/hop", "metadata": {"n": 1}}),
    )
    assert (job["stage"], job["source"]) == ("done", "garden cam.mp4")  # named by the URL it ended at
    assert job["clips"] >= 1
    assert client.get(f"/collections/pets/videos/{job['video_id']}").json()["metadata"] == {"n": 1}
    named = _job(client, client.post("/ingest", json={"collection": "pets", "url": f"{site.url}/named"}))
    assert named["source"] == "dog.mp4" and named["duplicate"]  # the server's file name; the same bytes


def test_a_url_on_a_loopback_address_is_refused_by_default(client: TestClient, site: Site) -> None:
    client.post("/collections", json={"name": "pets"})
    refused = client.post(
        "/ingest", json={"collection": "pets", "url": f"{site.url}/videos/garden%20cam.mp4"}
    )
    assert refused.status_code == 422 and refused.json()["code"] == "source_refused"
    assert "loopback" in refused.json()["reason"] and "ALLOW_PRIVATE_URLS" in refused.json()["reason"]
    assert site.hosts == []  # not a single request reached it


def test_every_redirect_is_checked_again(make_client: Callable[..., TestClient], site: Site) -> None:
    client = make_client(ingest={"allow_private_urls": True})
    client.post("/collections", json={"name": "pets"})
    to_ftp = client.post("/ingest", json={"collection": "pets", "url": f"{site.url}/to-ftp"})
    assert to_ftp.status_code == 422 and "only http and https" in to_ftp.json()["reason"]
    to_nowhere = client.post("/ingest", json={"collection": "pets", "url": f"{site.url}/to-nowhere"})
    assert to_nowhere.status_code == 422 and "unspecified" in to_nowhere.json()["reason"]


def test_remote_errors_sizes_and_stalls_have_their_own_answers(
    make_client: Callable[..., TestClient], site: Site
) -> None:
    client = make_client(
        ingest={"allow_private_urls": True, "max_file_bytes": 100_000, "url_connect_timeout_s": 0.5}
    )
    client.post("/collections", json={"name": "pets"})

    def send(path: str) -> Any:
        return client.post("/ingest", json={"collection": "pets", "url": site.url + path})

    missing = send("/missing")
    assert missing.status_code == 502 and "404" in missing.json()["reason"]
    huge = send("/huge")
    assert huge.status_code == 413
    stalled = send("/stall")
    assert stalled.status_code == 504 and stalled.json()["code"] == "fetch_timeout"
    assert client.post("/ingest", json={"collection": "pets", "url": "file:///etc/passwd"}).status_code == 422
    both = client.post("/ingest", json={"collection": "pets", "url": site.url, "path": "a.mp4"})
    assert both.status_code == 422 and "exactly one" in both.json()["reason"]
    not_json = client.post("/ingest", content=b"{", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400
    assert list(services_of(client).layout.uploads_dir.glob("*")) == []


def test_the_connection_goes_to_the_address_that_was_checked(site: Site, tmp_path: Path) -> None:
    """DNS rebinding: the name is resolved once; the request goes to that address with the name as Host."""
    port = int(site.url.rsplit(":", 1)[1])
    asked: list[str] = []

    def resolver(host: str, _port: int) -> list[str]:
        asked.append(host)
        return ["127.0.0.1"]  # a name no real resolver knows

    allowed = load_settings(data_dir=tmp_path / "data", ingest={"allow_private_urls": True}).ingest
    fetched = fetch_url(f"http://videos.test:{port}/hop", tmp_path, allowed, resolve=resolver)
    assert fetched.path.read_bytes() == site.video and fetched.filename == "garden cam.mp4"
    assert asked == ["videos.test", "videos.test"]  # once per hop (the redirect is another request)
    assert site.hosts == [f"videos.test:{port}"] * 2
    fetched.path.unlink()
    refused = load_settings(data_dir=tmp_path / "data").ingest
    with pytest.raises(SourceRefused, match="private address"):
        fetch_url(
            "http://videos.test/a.mp4", tmp_path, refused, resolve=lambda h, p: ["203.0.113.9", "10.1.2.3"]
        )
    with pytest.raises(FetchFailed, match="resolved to no address"):
        fetch_url("http://videos.test/a.mp4", tmp_path, allowed, resolve=lambda h, p: [])
    assert not list(tmp_path.glob("*.part"))


def test_a_download_that_takes_too_long_in_all_is_stopped(site: Site, tmp_path: Path) -> None:
    limits = load_settings(
        data_dir=tmp_path / "data", ingest={"allow_private_urls": True, "url_timeout_s": 0.3}
    ).ingest
    with pytest.raises(FetchTimeout):
        fetch_url(site.url + "/stall", tmp_path, limits)


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.8", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata services live here
        ("fe80::1", "link-local"),
        ("::ffff:127.0.0.1", "loopback"),
        ("fc00::1", "private"),
    ],
)
def test_addresses_of_the_servers_own_network_are_refused(address: str, kind: str) -> None:
    why = refusal(address, allow_private=False)
    assert why is not None and kind in why
    assert refusal(address, allow_private=True) is None
    assert refusal("93.184.216.34", allow_private=False) is None
    assert refusal("0.0.0.0", allow_private=True) is not None


def test_a_path_is_ingested_only_from_under_the_server_root(
    make_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    root = tmp_path / "library"
    (root / "garden").mkdir(parents=True)
    inside = write_video(root / "garden" / "dog.mp4", n=20, rate=10, size=(64, 48))
    outside = write_video(tmp_path / "secret.mp4", n=12, rate=10, size=(64, 48))
    (root / "link.mp4").symlink_to(outside)
    client = make_client(ingest={"server_root": str(root)})
    client.post("/collections", json={"name": "pets"})

    def send(path: str) -> Any:
        return client.post("/ingest", json={"collection": "pets", "path": path})

    job = _job(client, send("garden/dog.mp4"))
    assert (job["stage"], job["source"]) == ("done", "dog.mp4") and inside.is_file()  # copied, not moved
    assert _job(client, send(str(inside)))["duplicate"]  # absolute paths under the root too
    for refused, why in [
        ("../secret.mp4", "not under the server root"),
        (str(outside), "not under the server root"),
        ("link.mp4", "not under the server root"),  # a symlink is followed, then checked
        ("garden/none.mp4", "not a file"),
        ("garden", "not a file"),
    ]:
        answer = send(refused)
        assert answer.status_code == 422 and why in answer.json()["reason"], (refused, answer.text)
        assert answer.json()["code"] == "source_refused"


def test_path_ingest_is_refused_until_a_server_root_is_set(client: TestClient) -> None:
    client.post("/collections", json={"name": "pets"})
    refused = client.post("/ingest", json={"collection": "pets", "path": "/etc/passwd"})
    assert refused.status_code == 422 and "VIDEOSEEK_INGEST__SERVER_ROOT" in refused.json()["reason"]


def test_the_openapi_document_shows_both_ways_in_with_examples(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/ingest"]["post"]
    content = operation["requestBody"]["content"]
    assert {"collection", "file"} <= set(content["multipart/form-data"]["schema"]["required"])
    assert set(content["application/json"]["examples"]) == {"url", "path"}
    assert {"url", "path", "collection"} <= set(content["application/json"]["schema"]["properties"])
    assert {"202", "413", "415", "422", "502", "504"} <= set(operation["responses"])
