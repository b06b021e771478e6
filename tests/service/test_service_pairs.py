"""Training pairs over HTTP (embedded mode): captions, search feedback and subtitles of a collection; the rules at
the edge, paging, scopes, what deleting a video or a collection takes with it, and a restart."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from service_helpers import CAPTIONS, seed_clips, services_of, settings_for, start_client, video_id
from video_factory import write_video

V0, V1, UNKNOWN = video_id(0), video_id(1), "ff" * 32


def _captions(client: TestClient, captions: list[dict[str, Any]], name: str = "shapes", **kw: Any) -> Any:
    return client.post(f"/collections/{name}/captions", json={"captions": captions}, **kw)


def _all(client: TestClient, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every pair a listing gives, following next_cursor two at a time."""
    pairs: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get(path, params=query)
        assert page.status_code == 200, page.text
        body = page.json()
        pairs += body["pairs"]
        cursor = body["next_cursor"]
        if cursor is None:
            return pairs


def test_captions_for_indexed_videos_are_stored_once_listed_in_pages_and_deleted(
    seeded: tuple[TestClient, dict[str, str]],
) -> None:
    client, _ = seeded
    sent = [
        {"video_id": V0, "text": "a red ball bounces", "start_s": 5.0, "end_s": 15.0},
        {"video_id": V0, "text": "the whole of video zero"},
        {"video_id": V1, "text": "a blue cube slides", "start_s": 0.0, "end_s": 4.5},
    ]
    created = _captions(client, sent)
    assert created.status_code == 201, created.text
    assert (created.json()["added"], created.json()["already_stored"]) == (3, 0)
    again = _captions(client, sent).json()  # a retried request stores nothing twice
    assert (again["added"], again["already_stored"], again["ids"]) == (0, 3, created.json()["ids"])

    listed = _all(client, "/collections/shapes/captions")
    assert [(p["video_id"], p["text"], p["start_s"], p["end_s"]) for p in listed] == [
        (c["video_id"], c["text"], c.get("start_s"), c.get("end_s")) for c in sent
    ]
    assert all(p["kind"] == "caption" and not p["weak"] and p["source"] == "api" for p in listed)
    assert all(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", p["created_at"]) for p in listed)
    assert [p["text"] for p in _all(client, "/collections/shapes/captions", video_id=V1)] == [
        "a blue cube slides"
    ]
    assert _all(client, "/collections/shapes/captions", kind="subtitle") == []
    page = client.get("/collections/shapes/captions", params={"limit": 1}).json()
    assert page["counts"] == {"caption": 3, "feedback_positive": 0, "feedback_negative": 0, "subtitle": 0}

    pair_id = listed[0]["id"]
    assert client.delete(f"/collections/shapes/captions/{pair_id}").json() == {
        "deleted": pair_id,
        "clips_removed": 0,
    }
    assert client.delete(f"/collections/shapes/captions/{pair_id}").status_code == 404
    assert client.delete(f"/collections/shapes/feedback/{listed[1]['id']}").status_code == 404  # not feedback
    assert len(_all(client, "/collections/shapes/captions")) == 2


def test_a_request_naming_an_unknown_video_adds_nothing_and_names_it(
    seeded: tuple[TestClient, dict[str, str]],
) -> None:
    client, _ = seeded
    response = _captions(
        client, [{"video_id": V0, "text": "fine"}, {"video_id": UNKNOWN, "text": "for no video"}]
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "unknown_video" and UNKNOWN in response.json()["reason"]
    assert V0 not in response.json()["reason"]
    assert _all(client, "/collections/shapes/captions") == []


@pytest.mark.parametrize(
    ("caption", "said"),
    [
        ({"video_id": V0, "text": "   "}, "text"),
        ({"video_id": V0, "text": "x" * 1001}, "text"),
        ({"video_id": V0, "text": "t", "start_s": 4.0, "end_s": 4.0}, "end_s (4.0) must be after start_s"),
        ({"video_id": V0, "text": "t", "start_s": -1}, "start_s"),
        ({"video_id": "not-hex", "text": "t"}, "video_id"),
        ({"video_id": V0, "text": "t", "extra": 1}, "extra"),
    ],
)
def test_a_caption_that_breaks_a_rule_is_a_422_naming_it_and_stores_nothing(
    shapes: tuple[TestClient, dict[str, str]], caption: dict[str, Any], said: str
) -> None:
    client, _ = shapes
    response = _captions(client, [{"video_id": V1, "text": "a fine one"}, caption])
    assert response.status_code == 422, response.text
    assert said in response.json()["reason"], response.json()
    assert _all(client, "/collections/shapes/captions") == []


def test_request_bounds_collection_and_body_errors(shapes: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = shapes
    too_many = [{"video_id": V0, "text": f"caption {i}"} for i in range(1001)]
    assert _captions(client, too_many).status_code == 422
    assert _captions(client, []).status_code == 422
    assert _captions(client, [{"video_id": V0, "text": "t"}], name="nope").status_code == 404
    assert client.get("/collections/nope/captions").status_code == 404
    assert client.get("/collections/shapes/captions", params={"cursor": "abc"}).status_code == 422
    assert client.get("/collections/shapes/captions", params={"limit": 0}).status_code == 422
    not_json = client.post(
        "/collections/shapes/captions", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert not_json.status_code in (400, 422) and not_json.json()["reason"]


def test_a_caption_is_checked_against_the_length_of_a_decoded_video(
    seeded: tuple[TestClient, dict[str, str]],
) -> None:
    client, _ = seeded
    plan = services_of(client).layout.clip_plan("shapes", V0)  # what decoding V0 would have written
    plan.parent.mkdir(parents=True, exist_ok=True)
    plan.write_text(json.dumps({"duration_s": 12.0, "clips": []}))
    past = _captions(client, [{"video_id": V0, "text": "after the end", "start_s": 12.5}])
    assert past.status_code == 422 and "not before the end of the video" in past.json()["reason"]
    assert past.json()["code"] == "invalid_pair" and "captions[0]" in past.json()["reason"]
    assert (
        _captions(client, [{"video_id": V0, "text": "runs over", "start_s": 10, "end_s": 30}]).status_code
        == 201
    )
    (stored,) = _all(client, "/collections/shapes/captions")
    assert (stored["start_s"], stored["end_s"]) == (10.0, 12.0)  # cut to the video's end


def test_feedback_on_a_search_result_is_a_positive_pair_or_a_hard_negative(
    seeded: tuple[TestClient, dict[str, str]],
) -> None:
    client, videos = seeded
    top = client.post("/search", json={"collection": "shapes", "query": CAPTIONS[2]}).json()["results"][0]
    body = {"query": CAPTIONS[2], "clip_id": top["clip_id"], "relevant": True}
    liked = client.post("/collections/shapes/feedback", json=body)
    assert liked.status_code == 201, liked.text
    pair = liked.json()
    assert (pair["kind"], pair["video_id"], pair["clip_id"], pair["replaced"]) == (
        "feedback_positive",
        videos[CAPTIONS[2]],
        top["clip_id"],
        False,
    )
    assert (pair["start_s"], pair["end_s"], pair["text"]) == (top["start_s"], top["end_s"], CAPTIONS[2])

    changed = client.post("/collections/shapes/feedback", json={**body, "relevant": False}).json()
    assert (changed["kind"], changed["replaced"], changed["id"]) == ("feedback_negative", True, pair["id"])
    listed = _all(client, "/collections/shapes/feedback")
    assert [p["kind"] for p in listed] == ["feedback_negative"]
    assert _all(client, "/collections/shapes/feedback", kind="feedback_positive") == []
    assert _all(client, "/collections/shapes/captions") == []  # feedback is not a caption

    unknown = client.post(
        "/collections/shapes/feedback", json={**body, "clip_id": "00000000-0000-5000-8000-000000000000"}
    )
    assert unknown.status_code == 422 and unknown.json()["code"] == "unknown_clip"
    assert client.post("/collections/shapes/feedback", json={**body, "clip_id": "clip-7"}).status_code == 422
    assert client.post("/collections/shapes/feedback", json={**body, "query": " "}).status_code == 422
    assert client.delete(f"/collections/shapes/feedback/{pair['id']}").status_code == 200
    assert _all(client, "/collections/shapes/feedback") == []


def test_search_keys_give_feedback_and_only_ingest_keys_touch_captions(
    make_client: Callable[..., TestClient],
) -> None:
    keys = [
        {"key": "admin", "scopes": ["admin"]},
        {"key": "searcher", "scopes": ["search"]},
        {"key": "curator", "scopes": ["search", "ingest"]},
    ]
    client = make_client(api_keys=keys, client=("203.0.113.9", 40000))
    as_ = {name: {"Authorization": f"Bearer {name}"} for name in ("admin", "searcher", "curator")}
    assert client.post("/collections", json={"name": "shapes"}, headers=as_["admin"]).status_code == 201
    seed_clips(client, "shapes")
    caption = [{"video_id": V0, "text": "a red ball"}]
    assert _captions(client, caption, headers=as_["searcher"]).status_code == 403
    assert client.get("/collections/shapes/captions", headers=as_["searcher"]).status_code == 403
    assert client.get("/collections/shapes/feedback", headers=as_["searcher"]).status_code == 403
    assert _captions(client, caption, headers=as_["curator"]).status_code == 201
    top = client.post(
        "/search", json={"collection": "shapes", "query": "a red ball"}, headers=as_["searcher"]
    ).json()["results"][0]
    feedback = {"query": "a red ball", "clip_id": top["clip_id"], "relevant": True}
    assert (
        client.post("/collections/shapes/feedback", json=feedback, headers=as_["searcher"]).status_code == 201
    )
    assert client.post("/collections/shapes/feedback", json=feedback).status_code == 401


def test_deleting_a_video_or_the_collection_deletes_its_pairs(
    seeded: tuple[TestClient, dict[str, str]],
) -> None:
    client, _ = seeded
    _captions(client, [{"video_id": V0, "text": "zero"}, {"video_id": V1, "text": "one"}])
    top = client.post("/search", json={"collection": "shapes", "query": CAPTIONS[0]}).json()["results"][0]
    assert top["video_id"] == V0
    client.post(
        "/collections/shapes/feedback", json={"query": "q", "clip_id": top["clip_id"], "relevant": True}
    )

    assert client.delete(f"/collections/shapes/videos/{V0}").status_code == 200
    assert [p["text"] for p in _all(client, "/collections/shapes/captions")] == ["one"]
    assert _all(client, "/collections/shapes/feedback") == []

    assert client.delete("/collections/shapes").status_code == 200
    assert client.post("/collections", json={"name": "shapes"}).status_code == 201
    seed_clips(client, "shapes")
    body = client.get("/collections/shapes/captions").json()
    assert body["pairs"] == [] and sum(body["counts"].values()) == 0


def test_pairs_survive_a_restart_of_the_server(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "data")
    with ExitStack() as stack:
        client = start_client(stack, settings)
        assert client.post("/collections", json={"name": "shapes"}).status_code == 201
        seed_clips(client, "shapes")
        assert (
            _captions(client, [{"video_id": V0, "text": "kept", "start_s": 1, "end_s": 2}]).status_code == 201
        )
    with ExitStack() as stack:
        again = start_client(stack, settings)
        (kept,) = _all(again, "/collections/shapes/captions")
        assert (kept["text"], kept["start_s"], kept["end_s"]) == ("kept", 1.0, 2.0)


def _wait_done(client: TestClient, job_id: str, timeout_s: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        if job["stage"] in ("done", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


SIDECAR = (
    b"1\n00:00:00,500 --> 00:00:01,500\nheard <i>first</i>\n\n2\n00:00:02,000 --> 00:00:08,000\nheard last\n"
)


def test_an_upload_carries_captions_and_sidecar_subtitles_of_its_video(
    client: TestClient, tmp_path: Path
) -> None:
    assert client.post("/collections", json={"name": "films"}).status_code == 201
    video = write_video(tmp_path / "three.mp4", n=30, rate=10)  # 3 s
    captions = [{"text": "the whole video"}, {"text": "a ball rolls", "start_s": 1.0, "end_s": 9.0}]
    accepted = client.post(
        "/collections/films/videos",
        files=[
            ("file", ("three.mp4", video.read_bytes(), "video/mp4")),
            ("subtitles", ("three.srt", SIDECAR, "application/x-subrip")),
        ],
        data={"captions": json.dumps(captions)},
    )
    assert accepted.status_code == 202, accepted.text
    listed_now = {p["text"] for p in _all(client, "/collections/films/captions")}
    assert listed_now == {"the whole video", "a ball rolls", "heard first", "heard last"}  # before indexing
    job = _wait_done(client, accepted.json()["job_id"])
    assert job["stage"] == "done", job
    stored = {p["text"]: p for p in _all(client, "/collections/films/captions")}
    assert all(p["video_id"] == accepted.json()["video_id"] for p in stored.values())
    assert (stored["a ball rolls"]["end_s"], stored["a ball rolls"]["source"]) == (3.0, "upload")  # fitted
    assert (stored["heard first"]["kind"], stored["heard first"]["weak"]) == ("subtitle", True)
    assert stored["heard first"]["source"] == "sidecar three.srt"
    assert stored["heard last"]["end_s"] == 3.0


@pytest.mark.parametrize(
    ("fields", "files", "said"),
    [
        ({"captions": "[{"}, [], "captions"),
        ({"captions": json.dumps([{"text": ""}])}, [], "captions"),
        ({"captions": json.dumps({"text": "not a list"})}, [], "captions"),
        ({"captions": json.dumps([{"text": "t", "start_s": 5, "end_s": 2}])}, [], "end_s"),
        ({}, [("subtitles", ("notes.txt", b"hello", "text/plain"))], ".srt"),
        ({}, [("subtitles", ("empty.srt", b"no cues here", "text/plain"))], "holds no cue"),
        ({}, [("subtitles", ("x.vtt", b"00:00.000 --> 00:01.000\nhi", "text/vtt"))], "WEBVTT"),
    ],
)
def test_an_upload_with_bad_captions_or_subtitles_is_a_422_and_queues_nothing(
    shapes: tuple[TestClient, dict[str, str]],
    tmp_path: Path,
    fields: dict[str, str],
    files: list[Any],
    said: str,
) -> None:
    client, _ = shapes
    video = write_video(tmp_path / "v.mp4", n=10, rate=10)
    response = client.post(
        "/collections/shapes/videos",
        files=[("file", ("v.mp4", video.read_bytes(), "video/mp4")), *files],
        data=fields,
    )
    assert response.status_code == 422, response.text
    assert said in response.json()["reason"], response.json()
    assert _all(client, "/collections/shapes/captions") == []
    assert services_of(client).jobs.list("shapes") == []
