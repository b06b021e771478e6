"""API keys, scopes, per-collection keys, signed media URLs and the open (key-less) mode."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from service_helpers import seed_clips, services_of, settings_for, start_client, video_id

KEYS = [
    {"key": "admin-key", "scopes": ["admin"]},
    {"key": "search-key", "scopes": ["search"]},
    {"key": "ingest-key", "scopes": ["search", "ingest"]},
    {"key": "pets-only", "scopes": ["search", "ingest"], "collections": ["pets"]},
    {"key": "pets-admin", "scopes": ["admin"], "collections": ["pets"]},
]


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """An app that requires keys, with collections 'pets' and 'cars' (seeded), reached from another host."""
    settings = settings_for(tmp_path_factory.mktemp("auth") / "data", api_keys=KEYS)
    with ExitStack() as stack:
        client = start_client(stack, settings, client=("203.0.113.9", 40000))
        for name in ("pets", "cars"):
            assert (
                client.post("/collections", json={"name": name}, headers=auth("admin-key")).status_code == 201
            )
            seed_clips(client, name)
        yield client


def test_requests_without_a_valid_key_are_401(locked: TestClient) -> None:
    for headers in ({}, auth("wrong"), {"X-API-Key": "wrong"}, {"Authorization": "Basic abc"}):
        response = locked.get("/collections", headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["code"] == "unauthorized" and response.headers["www-authenticate"].startswith(
            "Bearer"
        )
    assert locked.get("/collections", headers={"X-API-Key": "search-key"}).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body", "allowed"),
    [
        (
            "post",
            "/search",
            {"collection": "cars", "query": "a car"},
            {"admin-key", "search-key", "ingest-key"},
        ),
        ("post", "/collections", {"name": "new"}, {"admin-key"}),
        ("delete", "/collections/nothing-here", None, {"admin-key"}),
        ("get", "/jobs/" + "0123456789abcdef" * 2, None, {"admin-key", "ingest-key"}),
        ("post", "/collections/cars/videos", None, {"admin-key", "ingest-key"}),
        ("post", "/collections/nothing-here/reindex", {"adapter": None}, {"admin-key"}),
        ("post", "/collections/nothing-here/retrain", {"data": "x.jsonl"}, {"admin-key"}),
        ("get", "/tasks/cars." + "0" * 32, None, {"admin-key"}),
        ("post", "/tasks/cars." + "0" * 32 + "/cancel", None, {"admin-key"}),
        ("get", "/collections/cars/tasks", None, {"admin-key"}),
    ],
)
def test_scopes_are_enforced(
    locked: TestClient, method: str, path: str, body: object, allowed: set[str]
) -> None:
    for key in ("admin-key", "search-key", "ingest-key"):
        kwargs = {"json": body} if body is not None else {}
        status = getattr(locked, method)(path, headers=auth(key), **kwargs).status_code
        if key in allowed:
            assert status not in (401, 403), (key, status)
        else:
            assert status == 403, (key, status)


def test_collection_limited_keys_see_only_their_collections(locked: TestClient) -> None:
    names = [c["name"] for c in locked.get("/collections", headers=auth("pets-only")).json()["collections"]]
    assert names == ["pets"]
    assert (
        locked.post(
            "/search", json={"collection": "pets", "query": "x"}, headers=auth("pets-only")
        ).status_code
        == 200
    )
    denied = locked.post("/search", json={"collection": "cars", "query": "x"}, headers=auth("pets-only"))
    assert denied.status_code == 403 and "cars" in denied.json()["reason"]
    assert locked.get("/collections/cars", headers=auth("pets-only")).status_code == 403
    upload = locked.post(
        "/collections/cars/videos", files={"file": ("a.mp4", b"x")}, headers=auth("pets-only")
    )
    assert upload.status_code == 403
    media = locked.get(f"/collections/cars/videos/{video_id(0)}/file", headers=auth("pets-only"))
    assert media.status_code == 403


def test_an_admin_key_limited_to_collections_neither_sees_lists_nor_cancels_other_collections_tasks(
    locked: TestClient,
) -> None:
    started = locked.post("/collections/cars/reindex", json={"adapter": None}, headers=auth("admin-key"))
    assert started.status_code == 202, started.text
    task = f"/tasks/{started.json()['task_id']}"
    assert locked.get(task, headers=auth("pets-admin")).status_code == 404  # as if it did not exist
    assert locked.post(f"{task}/cancel", headers=auth("pets-admin")).status_code == 404
    assert locked.get(task, headers=auth("pets-admin")).status_code == 404
    seen = locked.get(task, headers=auth("admin-key")).json()
    assert seen["cancel_requested"] is False, seen  # the refused cancel did nothing
    assert locked.get("/collections/cars/tasks", headers=auth("pets-admin")).status_code == 403
    assert locked.get("/collections/pets/tasks", headers=auth("pets-admin")).json() == {"tasks": []}


def test_media_urls_from_search_are_signed_and_work_without_a_key(locked: TestClient) -> None:
    layout = services_of(locked).layout
    vid = video_id(0)
    (layout.videos_dir("pets")).mkdir(parents=True, exist_ok=True)
    (layout.videos_dir("pets") / f"{vid}.mp4").write_bytes(b"\x00\x00\x00\x20ftypisom" + bytes(64))
    results = locked.post(
        "/search", json={"collection": "pets", "query": "x", "limit": 50}, headers=auth("search-key")
    )
    result = next(r for r in results.json()["results"] if r["video_id"] == vid)
    playback = result["playback_url"].split("#")[0]
    assert "sig=" in playback and result["playback_url"].endswith(f"#t={result['start_s']}")
    ranged = locked.get(playback, headers={"Range": "bytes=0-3"})
    assert ranged.status_code == 206 and ranged.content == b"\x00\x00\x00\x20"
    assert locked.get(urlsplit(playback).path).status_code == 401  # the bare path still needs a key
    query = parse_qs(urlsplit(playback).query)
    other = f"/collections/cars/videos/{vid}/file?exp={query['exp'][0]}&sig={query['sig'][0]}"
    assert locked.get(other).status_code == 401  # a signature is good for its own path only


@pytest.mark.parametrize(
    "query",
    [
        "exp=1%C2%B3&sig=abc",  # "1³": a Unicode digit to str.isdigit(), not to int()
        "exp=%EF%BC%91%EF%BC%92&sig=" + "0" * 32,  # fullwidth "12"
        "exp=" + "9" * 5000 + "&sig=" + "0" * 32,
        "exp=9999999999&sig=%C3%A9",  # a non-ASCII signature
        "exp=&sig=",
        "sig=" + "0" * 32,
    ],
)
def test_a_malformed_media_signature_is_a_401_like_a_wrong_one(locked: TestClient, query: str) -> None:
    thumbnail = f"/collections/pets/videos/{video_id(0)}/thumbnails/0.jpg?{query}"
    response = locked.get(thumbnail)
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "unauthorized"


def test_open_mode_serves_only_this_machine(make_client: Callable[..., TestClient]) -> None:
    remote = make_client(client=("192.0.2.44", 5555))
    response = remote.get("/collections")
    assert response.status_code == 403 and "VIDEOSEEK_API_KEYS" in response.json()["reason"]
    assert remote.get("/healthz").status_code == 200  # health stays reachable for probes


def test_open_mode_in_distributed_mode_is_open_to_everyone() -> None:
    from service.auth import KeyRing

    ring = KeyRing([], open_policy="anyone")
    assert ring.authenticate(None, "192.0.2.44").has_scope("admin")


def test_keys_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from service.main import create_app
    from videoseek.cli.runtime import open_runtime
    from videoseek.settings import get_settings

    monkeypatch.setenv("VIDEOSEEK_API_KEYS", json.dumps([{"key": "from-env", "scopes": ["search"]}]))
    get_settings.cache_clear()
    keys = create_app(open_runtime(get_settings())).state.keys
    assert not keys.is_open
    assert keys.authenticate("from-env", "198.51.100.1").has_scope("search")
