"""End to end through HTTP: upload toy videos, follow their jobs, find each one by its caption, play it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from videoseek.toy.generate import generate_videos

N_VIDEOS = 6


@pytest.fixture(scope="module")
def toy_videos(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Domain A toy videos: the toy CLIP retrieves these without an adapter."""
    out = tmp_path_factory.mktemp("toy-videos")
    manifest = generate_videos(out, N_VIDEOS, seed=11, domain="A")
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    for record in records:
        record["path"] = out / record["video"]
    return records


def wait_for_job(client: TestClient, job_id: str, timeout_s: float = 180.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        assert 0.0 <= job["progress"] <= 1.0
        if job["stage"] in ("done", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish: {client.get(f'/jobs/{job_id}').json()}")


def upload(client: TestClient, path: Path, metadata: dict[str, Any]) -> dict[str, Any]:
    with path.open("rb") as handle:
        response = client.post(
            "/collections/toys/videos",
            files={"file": (path.name, handle, "video/mp4")},
            data={"metadata": json.dumps(metadata)},
        )
    assert response.status_code == 202, response.text
    return response.json()


def test_uploaded_videos_are_found_by_their_captions(
    make_client: Callable[..., TestClient], toy_videos: list[dict[str, Any]]
) -> None:
    client = make_client(model="toy")  # the trained toy CLIP: captions must find their videos
    assert client.post("/collections", json={"name": "toys"}).status_code == 201
    accepted = [
        upload(client, r["path"], {"index": i, "camera": "a" if i % 2 else "b"})
        for i, r in enumerate(toy_videos)
    ]
    for ticket, record in zip(accepted, toy_videos, strict=True):
        job = wait_for_job(client, ticket["job_id"])
        assert job["stage"] == "done", job
        assert job["clips"] >= 1 and job["source"] == record["path"].name
        record["video_id"] = ticket["video_id"]

    for record in toy_videos:
        body = client.post(
            "/search", json={"collection": "toys", "query": record["caption"], "limit": 3}
        ).json()
        top = body["results"][0]
        assert top["video_id"] == record["video_id"], (record["caption"], body["results"])
        assert top["start_s"] <= top["best_frame_s"] <= top["end_s"]

    top = client.post("/search", json={"collection": "toys", "query": toy_videos[0]["caption"]}).json()[
        "results"
    ][0]
    video = client.get(top["playback_url"].split("#")[0], headers={"Range": "bytes=0-99"})
    assert video.status_code == 206 and len(video.content) == 100
    played = next(r for r in toy_videos if r["video_id"] == top["video_id"])
    assert video.content == played["path"].read_bytes()[:100]
    thumb = client.get(top["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.content[:3] == b"\xff\xd8\xff"

    filtered = client.post(
        "/search",
        json={
            "collection": "toys",
            "query": "a shape",
            "limit": 20,
            "filters": {"metadata": {"camera": "a"}},
        },
    ).json()["results"]
    assert {r["video_id"] for r in filtered} == {r["video_id"] for i, r in enumerate(toy_videos) if i % 2}

    again = upload(client, toy_videos[0]["path"], {})
    assert again["duplicate"] and again["video_id"] == toy_videos[0]["video_id"]
    described = client.get(f"/collections/toys/videos/{toy_videos[0]['video_id']}").json()
    assert described["clips"] >= 1 and described["source_name"] == toy_videos[0]["path"].name
    assert client.get("/collections/toys").json()["videos"] == N_VIDEOS


def test_an_upload_that_is_not_decodable_fails_its_job_with_a_reason(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client()
    client.post("/collections", json={"name": "toys"})
    junk = b"\x00\x00\x00\x20ftypisom" + bytes(range(256)) * 8  # an MP4 header and nothing decodable
    response = client.post("/collections/toys/videos", files={"file": ("broken.mp4", junk, "video/mp4")})
    assert response.status_code == 202
    job = wait_for_job(client, response.json()["job_id"])
    assert job["stage"] == "failed" and job["reason"]
