"""The HTTP API through the real app: search, paging, collections, videos, media, jobs, health, errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from service_helpers import CAPTIONS, MATCHING_CLIP, MATCHING_FRAME, seed_clips, services_of, video_id

from videoseek.ingest.submit import IngestQueueFull
from videoseek.store import StoreUnavailable


def search(client: TestClient, **body: Any) -> Any:
    body.setdefault("collection", "shapes")
    return client.post("/search", json=body)


def test_each_caption_finds_its_clip_first_with_the_matching_moment(
    shapes: tuple[TestClient, dict[str, str]],
) -> None:
    client, videos = shapes
    for caption, expected in videos.items():
        response = search(client, query=caption, limit=5)
        assert response.status_code == 200, response.text
        body = response.json()
        top = body["results"][0]
        assert (top["video_id"], top["clip_index"]) == (expected, MATCHING_CLIP)
        assert top["best_frame_s"] == top["start_s"] + 2.5 * MATCHING_FRAME
        assert top["playback_url"].endswith(f"/collections/shapes/videos/{expected}/file#t={top['start_s']}")
        assert top["thumbnail_url"] == f"/collections/shapes/videos/{expected}/thumbnails/{MATCHING_CLIP}.jpg"
        assert top["source_name"] == f"video{int(expected, 16)}.mp4"
        assert body["adapter_version"] is None
        scores = [r["score"] for r in body["results"]]
        assert scores == sorted(scores, reverse=True) and -1.0 <= scores[-1] <= scores[0] <= 1.0


def collect_pages(client: TestClient, **body: Any) -> list[list[dict[str, Any]]]:
    pages, cursor = [], None
    for _ in range(50):
        response = search(client, cursor=cursor, **body)
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append(page["results"])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages
    raise AssertionError("paging never ended")


def test_paging_by_clip_shows_every_clip_exactly_once(shapes: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = shapes
    pages = collect_pages(client, query="a shape moves", limit=4)
    ids = [r["clip_id"] for page in pages for r in page]
    assert len(ids) == len(set(ids)) == len(CAPTIONS) * 3
    assert all(len(page) <= 4 for page in pages)


def test_paging_by_video_never_repeats_a_video(shapes: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = shapes
    pages = collect_pages(client, query="a red ball bounces on the floor", limit=2, group_by="video")
    ids = [r["video_id"] for page in pages for r in page]
    assert sorted(ids) == sorted({video_id(i) for i in range(len(CAPTIONS))})
    assert pages[0][0]["video_id"] == video_id(0)


def test_a_cursor_only_continues_its_own_query(shapes: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = shapes
    cursor = search(client, query="a blue cube", limit=2).json()["next_cursor"]
    assert cursor
    other = search(client, query="a green triangle", limit=2, cursor=cursor)
    assert other.status_code == 400 and "different query" in other.json()["reason"]
    forged = search(client, query="a blue cube", limit=2, cursor=cursor[:-4] + "AAAA")
    assert forged.status_code == 400 and forged.json()["code"] == "bad_request"


def test_filters_restrict_results(shapes: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = shapes
    only = search(client, query="a shape", limit=50, filters={"video_ids": [video_id(2), video_id(3)]}).json()
    assert {r["video_id"] for r in only["results"]} == {video_id(2), video_id(3)}
    door = search(client, query="a shape", limit=50, filters={"metadata": {"camera": "door"}}).json()
    assert door["results"] and all(r["metadata"]["camera"] == "door" for r in door["results"])
    number = search(client, query="a shape", limit=50, filters={"metadata": {"index": 4}}).json()
    assert {r["video_id"] for r in number["results"]} == {video_id(4)}
    late = search(client, query="a shape", limit=50, filters={"time_range": {"start_s": 11.0}}).json()
    assert late["results"] and all(r["end_s"] >= 11.0 for r in late["results"])
    assert {r["clip_index"] for r in late["results"]} == {1, 2}


def test_min_score_drops_weak_matches(shapes: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = shapes
    everything = search(client, query=CAPTIONS[0], limit=100).json()["results"]
    cut = everything[2]["score"]
    kept = search(client, query=CAPTIONS[0], limit=100, min_score=cut).json()["results"]
    assert kept and all(r["score"] >= cut for r in kept) and len(kept) < len(everything)


def test_repeated_queries_hit_the_embedding_cache(shapes: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = shapes
    embedder = services_of(client).require_engine().embedder
    search(client, query="A  red ball BOUNCES on the floor")
    hits = embedder.hits
    search(client, query="a red ball bounces on the floor ")
    assert embedder.hits == hits + 1
    assert 'videoseek_query_cache_total{result="hit"}' in client.get("/metrics").text


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"collection": "missing", "query": "x"}, 404, "collection_not_found"),
        ({"collection": "Bad Name!", "query": "x"}, 422, "invalid_request"),
        ({"query": "x"}, 422, "invalid_request"),
        ({"collection": "shapes", "query": ""}, 422, "invalid_request"),
        ({"collection": "shapes", "query": "x", "limit": 0}, 422, "invalid_request"),
        ({"collection": "shapes", "query": "x", "group_by": "frame"}, 422, "invalid_request"),
        ({"collection": "shapes", "query": "x", "filters": {"metadata": {'a"b': 1}}}, 422, "invalid_request"),
        (  # no stored integer is this big: the metadata rules keep them to 64 bits
            {"collection": "shapes", "query": "x", "filters": {"metadata": {"n": int("9" * 4000)}}},
            422,
            "invalid_request",
        ),
        (
            {"collection": "shapes", "query": "x", "filters": {"time_range": {"start_s": 9, "end_s": 1}}},
            422,
            "invalid_request",
        ),
        ({"collection": "shapes", "query": "x", "surprise": 1}, 422, "invalid_request"),
        ({"collection": "shapes", "query": "x", "cursor": "not-a-cursor"}, 400, "bad_request"),
    ],
)
def test_bad_searches_get_json_reasons(
    shapes: tuple[TestClient, dict[str, str]], body: dict[str, Any], status: int, code: str
) -> None:
    client, _ = shapes
    response = client.post("/search", json=body)
    assert response.status_code == status, response.text
    assert response.json()["code"] == code and response.json()["reason"]


def test_malformed_json_is_a_422_with_a_reason(client: TestClient) -> None:
    response = client.post("/search", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 422 and response.json()["reason"]


def test_collection_lifecycle(client: TestClient) -> None:
    created = client.post("/collections", json={"name": "pets"})
    assert created.status_code == 201 and created.json()["adapter_version"] is None
    assert client.post("/collections", json={"name": "pets"}).status_code == 409
    seed_clips(client, "pets", CAPTIONS[:2])
    described = client.get("/collections/pets").json()
    assert (described["clips"], described["videos"]) == (6, 2)
    assert [c["name"] for c in client.get("/collections").json()["collections"]] == ["pets"]
    listed = client.get("/collections/pets/videos").json()
    assert {(v["video_id"], v["state"], v["clips"]) for v in listed["videos"]} == {
        (video_id(0), "indexed", 3),
        (video_id(1), "indexed", 3),
    }
    assert listed["next_cursor"] is None
    assert client.delete("/collections/pets").status_code == 200
    gone = client.get("/collections/pets")
    assert gone.status_code == 404 and gone.json()["code"] == "collection_not_found"
    again = client.delete("/collections/pets")
    assert again.status_code == 404 and "pets" in again.json()["reason"]
    searched = client.post("/search", json={"collection": "pets", "query": "a dog"})
    assert searched.status_code == 404 and searched.json()["code"] == "collection_not_found"
    unknown_adapter = client.post("/collections", json={"name": "other", "adapter": "no-such-adapter"})
    assert unknown_adapter.status_code == 422 and "adapter" in unknown_adapter.json()["reason"]


def test_a_collection_indexed_with_another_model_is_a_409_that_says_which(client: TestClient) -> None:
    services_of(client).require_store().create_collection("foreign", 16, model="ViT-L-14:openai")
    refused = client.post("/search", json={"collection": "foreign", "query": "a dog"})
    assert refused.status_code == 409, refused.text
    assert "ViT-L-14:openai" in refused.json()["reason"] and "re-index" in refused.json()["reason"]


def put_media(client: TestClient, collection: str, vid: str, data: bytes) -> Path:
    layout = services_of(client).layout
    path = layout.videos_dir(collection) / f"{vid}.mp4"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    thumbs = layout.thumbnails_dir(collection, vid)
    thumbs.mkdir(parents=True, exist_ok=True)
    (thumbs / "1.jpg").write_bytes(b"\xff\xd8\xff thumbnail")
    return path


def test_video_file_supports_range_requests(shapes: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = shapes
    data = bytes(range(256)) * 40
    put_media(client, "shapes", video_id(0), data)
    url = f"/collections/shapes/videos/{video_id(0)}/file"
    whole = client.get(url)
    assert whole.status_code == 200 and whole.content == data and whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-type"] == "video/mp4"
    part = client.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    tail = client.get(url, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == data[-10:]
    bad = client.get(url, headers={"Range": f"bytes={len(data)}-"})
    assert bad.status_code == 416 and bad.headers["content-range"] == f"bytes */{len(data)}"
    assert bad.json()["code"] == "range_not_satisfiable"
    stale = client.get(url, headers={"Range": "bytes=0-9", "If-Range": '"old-etag"'})
    assert stale.status_code == 200 and stale.content == data
    thumb = client.get(f"/collections/shapes/videos/{video_id(0)}/thumbnails/1.jpg")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert client.get(f"/collections/shapes/videos/{video_id(0)}/thumbnails/7.jpg").status_code == 404
    assert client.get(f"/collections/shapes/videos/{video_id(5)}/file").status_code == 404
    assert client.get("/collections/shapes/videos/..%2F..%2Fetc/file").status_code in (404, 422)


def test_get_and_delete_a_video_removes_points_file_and_thumbnails(
    seeded: tuple[TestClient, dict[str, str]],
) -> None:
    client, _ = seeded
    path = put_media(client, "shapes", video_id(0), b"\x00\x00\x00\x20ftypisom")
    described = client.get(f"/collections/shapes/videos/{video_id(0)}").json()
    assert described["clips"] == 3 and described["file_url"].endswith(f"/videos/{video_id(0)}/file")
    deleted = client.delete(f"/collections/shapes/videos/{video_id(0)}")
    assert deleted.status_code == 200 and deleted.json()["clips_removed"] == 3
    assert not path.exists()
    assert not services_of(client).layout.thumbnails_dir("shapes", video_id(0)).exists()
    assert client.get(f"/collections/shapes/videos/{video_id(0)}").status_code == 404
    assert client.delete(f"/collections/shapes/videos/{video_id(0)}").status_code == 404
    hits = search(client, query=CAPTIONS[0], limit=100).json()["results"]
    assert video_id(0) not in {r["video_id"] for r in hits}
    assert client.get("/collections/shapes/videos/not-hex").status_code == 422


def upload(client: TestClient, collection: str, data: bytes, name: str = "clip.mp4", **extra: Any) -> Any:
    return client.post(
        f"/collections/{collection}/videos", files={"file": (name, data, "video/mp4")}, **extra
    )


def test_upload_errors(make_client: Callable[..., TestClient]) -> None:
    client = make_client(ingest={"max_file_bytes": 1000})
    client.post("/collections", json={"name": "c1"})
    assert upload(client, "nope", b"x" * 10).status_code == 404
    too_big = upload(client, "c1", b"\x00" * 5000)
    assert too_big.status_code == 413 and too_big.json()["code"] == "payload_too_large"
    text = upload(client, "c1", b"just some words\n", name="notes.mp4")
    assert text.status_code == 415 and "text file" in text.json()["reason"]
    not_multipart = client.post("/collections/c1/videos", json={"file": "x"})
    assert not_multipart.status_code == 415
    no_file = client.post("/collections/c1/videos", data={"metadata": "{}"}, files={"other": ("a", b"b")})
    assert no_file.status_code == 422 and "'file'" in no_file.json()["reason"]
    leftovers = list(services_of(client).layout.uploads_dir.glob("*"))
    assert leftovers == []


def test_a_full_ingest_queue_is_a_429_with_retry_after(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    client.post("/collections", json={"name": "c1"})

    def full(*_: Any, **__: Any) -> None:
        raise IngestQueueFull("ingest queue is full (4 jobs waiting)")

    monkeypatch.setattr(services_of(client).runtime, "submit_ingest", full)
    response = upload(client, "c1", b"\x00\x00\x00\x20ftypisom" + bytes(100))
    assert response.status_code == 429 and int(response.headers["retry-after"]) >= 1
    assert list(services_of(client).layout.uploads_dir.glob("*")) == []


def test_store_outage_is_a_503_with_retry_after(
    shapes: tuple[TestClient, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = shapes

    def down(*_: Any, **__: Any) -> None:
        raise StoreUnavailable("connection refused by Qdrant at http://qdrant:6333")

    monkeypatch.setattr(services_of(client).require_store(), "search", down)
    response = search(client, query="a query never seen before")
    assert response.status_code == 503 and response.headers["retry-after"]
    assert response.json()["code"] == "store_unavailable" and "Qdrant" in response.json()["reason"]


def test_redis_outage_is_a_503(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    def down(*_: Any) -> None:
        raise RedisConnectionError("Error 111 connecting to redis:6379. Connection refused.")

    monkeypatch.setattr(services_of(client).jobs, "get", down)
    response = client.get("/jobs/" + "0123456789abcdef" * 2)
    assert response.status_code == 503 and response.json()["code"] == "redis_unavailable"


def test_unexpected_errors_are_json_without_a_traceback(
    make_client: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client(raise_server_exceptions=False)

    def broken(*_: Any) -> None:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(services_of(client).require_store(), "list_collections", broken)
    response = client.get("/collections")
    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"
    assert "secret internal detail" not in response.text and "Traceback" not in response.text


def test_jobs_and_health(client: TestClient) -> None:
    missing = client.get("/jobs/" + "0" * 32)
    assert missing.status_code == 404 and "POST /collections/{name}/videos" in missing.json()["reason"]
    malformed = client.get("/jobs/does-not-exist")  # job ids are 32 hex digits (the schema says so)
    assert malformed.status_code == 422 and "POST /collections/{name}/videos" in malformed.json()["reason"]
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz").json()
    assert ready["status"] == "ok" and ready["checks"] == {"model": "ok", "store": "ok"}
    metrics = client.get("/metrics").text
    for name in (
        "videoseek_http_request_duration_seconds",
        "videoseek_queue_depth",
        "videoseek_ingest_uploads_total",
    ):
        assert name in metrics


def test_web_page_and_openapi_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "videoseek" in page.text and "static/app.js" in page.text
    assert client.get("/static/app.js").status_code == 200
    schema = client.get("/openapi.json").json()
    assert {"/search", "/collections", "/collections/{name}/videos", "/jobs/{job_id}", "/readyz"} <= set(
        schema["paths"]
    )
    assert schema["paths"]["/search"]["post"]["description"]


def test_a_store_unavailable_at_start_is_retried_until_it_answers(
    make_client: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    from service import state
    from videoseek.runtime import embedded
    from videoseek.store import open_store

    held = {"by_other_process": True}

    def flaky(settings: Any) -> Any:
        if held["by_other_process"]:
            raise StoreUnavailable("the store directory is locked by another process (videoseek ingest?)")
        return open_store(settings)

    monkeypatch.setattr(embedded, "open_store", flaky)
    monkeypatch.setattr(state, "STORE_RETRY_S", 0.0)
    client = make_client(wait=False)
    not_ready = client.get("/readyz")
    assert not_ready.status_code == 503 and "locked" in not_ready.json()["checks"]["store"]
    down = client.post("/search", json={"collection": "x", "query": "q"})
    assert down.status_code == 503 and down.headers["retry-after"] and "locked" in down.json()["reason"]
    held["by_other_process"] = False
    assert client.post("/collections", json={"name": "x"}).status_code == 201
    assert client.post("/search", json={"collection": "x", "query": "q"}).json()["results"] == []


def test_a_recreated_collection_is_never_ranked_with_the_old_ones_vectors(client: TestClient) -> None:
    client.post("/collections", json={"name": "again"})
    first = seed_clips(client, "again", CAPTIONS)
    assert (
        search(client, collection="again", query=CAPTIONS[0]).json()["results"][0]["video_id"]
        == first[CAPTIONS[0]]
    )
    assert client.delete("/collections/again").status_code == 200
    client.post("/collections", json={"name": "again"})
    second = seed_clips(client, "again", list(reversed(CAPTIONS)))  # same point ids, other vectors
    assert second[CAPTIONS[0]] != first[CAPTIONS[0]]
    top = search(client, collection="again", query=CAPTIONS[0]).json()["results"][0]
    assert top["video_id"] == second[CAPTIONS[0]]


@pytest.mark.parametrize(
    ("path", "methods"),
    [
        ("/collections", "GET, OPTIONS, POST"),
        ("/collections/shapes", "DELETE, GET, OPTIONS"),
        ("/collections/shapes/videos", "GET, OPTIONS, POST"),
        (f"/collections/shapes/videos/{'0' * 16}", "DELETE, GET, OPTIONS"),
        ("/search", "OPTIONS, POST"),
        ("/tasks/shapes." + "0" * 32 + "/cancel", "OPTIONS, POST"),
        ("/healthz", "GET, OPTIONS"),
        ("/static/app.js", "GET, HEAD, OPTIONS"),
    ],
)
def test_options_and_405s_list_every_method_of_the_path(client: TestClient, path: str, methods: str) -> None:
    options = client.options(path)
    assert options.status_code == 204 and options.headers["allow"] == methods
    refused = client.request("PATCH", path)  # a method no route of any of these paths takes
    assert refused.status_code == 405 and refused.headers["allow"] == methods
    assert refused.json()["code"] == "method_not_allowed"


def test_options_on_a_path_that_does_not_exist_is_a_404(client: TestClient) -> None:
    assert client.options("/no/such/path").status_code == 404
