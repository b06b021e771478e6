"""A collection's videos and jobs as the API lists them: names, states (failures with their reason), clip counts,
durations, thumbnails and dates, paged with signed cursors; one time format (ISO 8601 UTC) everywhere and
seconds to the millisecond."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from service_helpers import services_of
from video_factory import write_audio_only, write_video

from videoseek.store import ClipPoint

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _ingest(client: TestClient, collection: str, files: list[Path]) -> list[dict[str, Any]]:
    accepted = []
    for path in files:
        answer = client.post(
            f"/collections/{collection}/videos", files={"file": (path.name, path.read_bytes(), "video/mp4")}
        )
        assert answer.status_code == 202, answer.text
        accepted.append(answer.json())
    assert services_of(client).runtime.runner.join(timeout=180)  # type: ignore[attr-defined]
    return accepted


@pytest.fixture
def library(client: TestClient, tmp_path: Path) -> tuple[TestClient, dict[str, str]]:
    """Collection 'home': three indexed videos (one an AVI with a playback copy) and a failed upload."""
    client.post("/collections", json={"name": "home"})
    files = [
        write_video(tmp_path / "kitchen.mp4", n=30, rate=10, size=(64, 48)),
        write_video(tmp_path / "garden.mp4", n=25, rate=10, size=(64, 48)),
        write_video(tmp_path / "attic.avi", codec="mpeg4", n=20, rate=10, size=(64, 48), fmt="avi"),
        write_audio_only(tmp_path / "radio.m4a", seconds=1.0),
    ]
    accepted = _ingest(client, "home", files)
    return client, {path.name: a["video_id"] for path, a in zip(files, accepted, strict=True)}


def test_the_video_listing_shows_every_video_with_its_state_and_failures_with_their_reason(
    library: tuple[TestClient, dict[str, str]],
) -> None:
    client, ids = library
    listed = client.get("/collections/home/videos").json()
    assert listed["next_cursor"] is None
    videos = {v["source_name"]: v for v in listed["videos"]}
    assert [v["source_name"] for v in listed["videos"]] == [
        "radio.m4a",
        "attic.avi",
        "garden.mp4",
        "kitchen.mp4",
    ]
    failed = videos["radio.m4a"]
    assert (failed["state"], failed["clips"], failed["playback_url"]) == ("failed", 0, None)
    assert "no video stream" in failed["reason"]
    kitchen = videos["kitchen.mp4"]
    assert (kitchen["state"], kitchen["video_id"], kitchen["playback"]) == (
        "indexed",
        ids["kitchen.mp4"],
        "original",
    )
    assert kitchen["clips"] >= 1 and kitchen["duration_s"] == pytest.approx(3.0, abs=0.11)
    assert (
        kitchen["playback_url"]
        == kitchen["file_url"]
        == f"/collections/home/videos/{ids['kitchen.mp4']}/file"
    )
    assert client.get(kitchen["thumbnail_url"]).headers["content-type"] == "image/jpeg"
    attic = videos["attic.avi"]
    assert attic["playback"] == "ready" and attic["playback_url"].endswith(
        f"/{ids['attic.avi']}/playback.mp4"
    )
    for video in listed["videos"]:
        assert ISO_UTC.match(video["created_at"]) and ISO_UTC.match(video["updated_at"]), video
        assert video["job"]["job_id"] and ISO_UTC.match(video["job"]["created_at"])
        if video["duration_s"] is not None:
            assert video["duration_s"] == round(video["duration_s"], 3)


def test_the_playback_copy_is_range_served_as_mp4(library: tuple[TestClient, dict[str, str]]) -> None:
    client, ids = library
    url = client.get(f"/collections/home/videos/{ids['attic.avi']}").json()["playback_url"]
    whole = client.get(url)
    assert whole.status_code == 200 and whole.headers["content-type"] == "video/mp4"
    part = client.get(url, headers={"Range": "bytes=4-11"})
    assert part.status_code == 206 and part.content == whole.content[4:12] and part.content[:4] == b"ftyp"
    assert client.get(f"/collections/home/videos/{ids['kitchen.mp4']}/playback.mp4").status_code == 404


def test_a_deleted_video_leaves_the_listing(library: tuple[TestClient, dict[str, str]]) -> None:
    client, ids = library
    assert client.delete(f"/collections/home/videos/{ids['garden.mp4']}").status_code == 200
    names = [v["source_name"] for v in client.get("/collections/home/videos").json()["videos"]]
    assert names == ["radio.m4a", "attic.avi", "kitchen.mp4"]


def test_deleting_a_failed_upload_dismisses_it_and_nothing_else(
    library: tuple[TestClient, dict[str, str]],
) -> None:
    client, ids = library
    answer = client.delete(f"/collections/home/videos/{ids['radio.m4a']}")
    assert answer.status_code == 200, answer.text
    assert answer.json()["clips_removed"] == 0
    names = [v["source_name"] for v in client.get("/collections/home/videos").json()["videos"]]
    assert names == ["attic.avi", "garden.mp4", "kitchen.mp4"]
    assert [j["stage"] for j in client.get("/collections/home/jobs").json()["jobs"]] == ["done"] * 3
    assert client.delete(f"/collections/home/videos/{ids['radio.m4a']}").status_code == 404  # gone for good


def test_pages_of_videos_and_jobs_follow_each_other_without_repeats(
    library: tuple[TestClient, dict[str, str]],
) -> None:
    client, _ = library
    for listing, key, item_key in (("videos", "videos", "video_id"), ("jobs", "jobs", "job_id")):
        seen: list[str] = []
        cursor = None
        for _ in range(10):
            query = f"?limit=1{'&cursor=' + cursor if cursor else ''}"
            page = client.get(f"/collections/home/{listing}{query}").json()
            assert len(page[key]) == 1
            seen.append(page[key][0][item_key])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == 4, (listing, seen)
        whole = [item[item_key] for item in client.get(f"/collections/home/{listing}").json()[key]]
        assert seen == whole  # the same order, newest first


def test_a_cursor_of_another_listing_or_tampered_with_is_a_400(
    library: tuple[TestClient, dict[str, str]],
) -> None:
    client, _ = library
    client.post("/collections", json={"name": "other"})
    cursor = client.get("/collections/home/videos?limit=1").json()["next_cursor"]
    assert client.get(f"/collections/other/videos?cursor={cursor}").status_code == 400
    assert client.get(f"/collections/home/jobs?cursor={cursor}").status_code == 400
    assert client.get(f"/collections/home/videos?cursor={cursor[:-2]}AA").status_code == 400
    assert client.get("/collections/nope/videos").status_code == 404
    assert client.get("/collections/nope/jobs").status_code == 404


def test_the_job_listing_has_every_job_newest_first_with_iso_times(
    library: tuple[TestClient, dict[str, str]],
) -> None:
    client, _ = library
    jobs = client.get("/collections/home/jobs").json()["jobs"]
    assert [j["source"] for j in jobs] == ["radio.m4a", "attic.avi", "garden.mp4", "kitchen.mp4"]
    assert [j["stage"] for j in jobs] == ["failed", "done", "done", "done"]
    for job in jobs:
        assert ISO_UTC.match(job["created_at"]) and ISO_UTC.match(job["updated_at"])
        assert job["created_at"] <= job["updated_at"]
    assert ISO_UTC.match(client.get(f"/jobs/{jobs[0]['job_id']}").json()["created_at"])
    assert ISO_UTC.match(client.get("/collections/home").json()["created_at"])
    assert ISO_UTC.match(client.get("/collections").json()["collections"][0]["created_at"])


def test_search_results_give_seconds_to_the_millisecond(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    client.post("/collections", json={"name": "odd"})
    services = services_of(client)
    dim = services.require_store().get_collection("odd").dim
    frames = np.ones((3, dim), np.float32)
    services.require_store().upsert(
        "odd",
        [
            ClipPoint(
                video_id="ab" * 8,
                clip_index=0,
                start_s=1.0 / 3.0,
                end_s=1.9583333333333333,
                pooled=frames.mean(axis=0),
                frames=frames,
                frame_times=[1.0 / 3.0, 1.1234567, 1.9583333333333333],
                payload={"source": "x.mp4"},
            )
        ],
    )
    (result,) = client.post("/search", json={"collection": "odd", "query": "anything"}).json()["results"]
    assert (result["start_s"], result["end_s"]) == (0.333, 1.958)
    assert result["best_frame_s"] in (0.333, 1.123, 1.958)
    assert result["playback_url"].endswith("/file#t=0.333") and result["file_url"].endswith("/file")


def test_example_queries_are_set_by_an_admin_and_read_by_the_page(client: TestClient) -> None:
    client.post("/collections", json={"name": "home"})
    assert client.get("/collections/home/examples").json() == {"collection": "home", "examples": []}
    saved = client.put("/collections/home/examples", json={"examples": ["a dog runs", "  ", "a cat sleeps"]})
    assert saved.status_code == 422  # a blank one breaks the rule
    saved = client.put("/collections/home/examples", json={"examples": ["a dog runs", "a cat sleeps"]})
    assert saved.json()["examples"] == ["a dog runs", "a cat sleeps"]
    assert client.get("/collections/home/examples").json()["examples"] == ["a dog runs", "a cat sleeps"]
    client.delete("/collections/home")
    client.post("/collections", json={"name": "home"})
    assert client.get("/collections/home/examples").json()["examples"] == []  # gone with the collection
    assert client.get("/collections/nope/examples").status_code == 404


def test_jobs_stores_keep_epoch_seconds_and_the_api_converts_them() -> None:
    from service.videos import job_out
    from videoseek.jobs import Job

    job = Job("0" * 32, "home", "ab" * 8, "a.mp4", created_at=0.0, updated_at=1.5)
    out = job_out(job).model_dump(mode="json")
    assert (out["created_at"], out["updated_at"]) == ("1970-01-01T00:00:00.000Z", "1970-01-01T00:00:01.500Z")
