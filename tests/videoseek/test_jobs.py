"""The job store: state survives a reopen (SQLite), works on Redis, and claims make dedup atomic."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from videoseek.jobs import (
    Job,
    JobNotFound,
    JobStage,
    JobStore,
    SqliteJobStore,
    new_job_id,
    position_of,
)
from worker.redis_jobs import RedisJobStore


def _job(collection: str = "films", video_id: str = "ab" * 32, **kw: object) -> Job:
    return Job(
        job_id=new_job_id(),
        collection=collection,
        video_id=video_id,
        source="cat.mp4",
        video_file=f"{video_id}.mp4",
        metadata={"lang": "en", "n": 3},
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStore]:
    if request.param == "sqlite":
        s: JobStore = SqliteJobStore(tmp_path / "jobs.sqlite3")
    else:
        url = request.getfixturevalue("redis_url")
        s = RedisJobStore(url, request.getfixturevalue("redis_prefix"))
    yield s
    s.close()


def test_job_roundtrip_and_update(store: JobStore) -> None:
    job = store.create(_job())
    assert store.get(job.job_id) == job
    updated = store.update(job.job_id, stage=JobStage.EMBEDDING, progress=0.5, clips=4)
    assert (updated.stage, updated.progress, updated.clips) == (JobStage.EMBEDDING, 0.5, 4)
    assert updated.metadata == {"lang": "en", "n": 3}
    assert updated.updated_at >= job.updated_at
    failed = store.update(job.job_id, stage="failed", reason="no video stream")
    assert failed.stage is JobStage.FAILED and failed.stage.terminal and failed.reason == "no video stream"
    assert store.require(job.job_id) == failed


def test_unknown_job_and_immutable_fields_are_errors(store: JobStore) -> None:
    assert store.get("nope") is None
    with pytest.raises(JobNotFound):
        store.update("nope", stage="done")
    job = store.create(_job())
    with pytest.raises(ValueError, match="cannot be updated"):
        store.update(job.job_id, collection="other")


def test_list_is_newest_first_and_filters_by_collection(store: JobStore) -> None:
    a = store.create(_job("films", created_at=1.0))
    b = store.create(_job("films", created_at=2.0))
    c = store.create(_job("clips", created_at=3.0))
    assert [j.job_id for j in store.list()] == [c.job_id, b.job_id, a.job_id]
    assert [j.job_id for j in store.list("films")] == [b.job_id, a.job_id]
    assert [j.job_id for j in store.list(limit=1)] == [c.job_id]


def test_pages_after_a_position_continue_newest_first_through_ties(store: JobStore) -> None:
    """Keyset pages: (created_at, job_id) descending, so jobs created in the same instant are neither lost nor
    repeated at a page boundary."""
    made = [
        store.create(replace(_job(created_at=float(t)), job_id=f"{i:032x}"))
        for i, t in enumerate([1, 2, 2, 2, 3])
    ]
    store.create(_job("clips", created_at=2.5))  # another collection's: never in these pages
    order = [j.job_id for j in sorted(made, key=position_of, reverse=True)]
    assert [j.job_id for j in store.list("films", limit=10)] == order
    pages, after = [], None
    while True:
        page = store.list("films", limit=2, after=after)
        if not page:
            break
        pages.append([j.job_id for j in page])
        after = position_of(page[-1])
    assert [job_id for page in pages for job_id in page] == order and len(pages) == 3


def test_playback_is_one_of_its_states(store: JobStore) -> None:
    job = store.create(_job())
    assert store.require(job.job_id).playback == ""
    assert store.update(job.job_id, playback="pending").playback == "pending"
    assert store.require(job.job_id).playback == "pending"
    with pytest.raises(ValueError, match="playback"):
        store.update(job.job_id, playback="sometimes")


def test_only_one_job_claims_a_video_and_release_frees_it(store: JobStore) -> None:
    owners: list[str | None] = []
    ids = [new_job_id() for _ in range(8)]

    def claim(job_id: str) -> None:
        owners.append(store.claim_video("films", "cd" * 32, job_id))

    threads = [threading.Thread(target=claim, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winner = store.video_owner("films", "cd" * 32)
    assert winner in ids
    assert owners.count(None) == 1 and all(o == winner for o in owners if o is not None)
    # Claims are per collection, and only the owner can release.
    assert store.claim_video("clips", "cd" * 32, "x") is None
    store.release_video("films", "cd" * 32, "someone-else")
    assert store.video_owner("films", "cd" * 32) == winner
    store.release_video("films", "cd" * 32, winner)  # type: ignore[arg-type]
    assert store.video_owner("films", "cd" * 32) is None


def test_delete_collection_forgets_jobs_and_claims(store: JobStore) -> None:
    a = store.create(_job("films"))
    b = store.create(_job("clips"))
    store.claim_video("films", a.video_id, a.job_id)
    assert store.delete_collection("films") == 1
    assert store.get(a.job_id) is None and store.video_owner("films", a.video_id) is None
    assert store.get(b.job_id) == b and [j.job_id for j in store.list()] == [b.job_id]


def test_forgetting_a_videos_ended_jobs_leaves_running_ones_and_other_videos(store: JobStore) -> None:
    failed = store.create(_job(stage=JobStage.FAILED, reason="no video stream"))
    done = store.create(_job(stage=JobStage.DONE))
    running = store.create(_job(stage=JobStage.EMBEDDING))
    other = store.create(_job(video_id="cd" * 32, stage=JobStage.FAILED))
    elsewhere = store.create(_job("clips", stage=JobStage.FAILED))
    assert store.forget_ended_jobs("films", "ab" * 32) == 2
    assert store.get(failed.job_id) is None and store.get(done.job_id) is None
    assert {j.job_id for j in store.list()} == {running.job_id, other.job_id, elsewhere.job_id}
    assert {j.job_id for j in store.list("films")} == {running.job_id, other.job_id}
    assert store.forget_ended_jobs("films", "ab" * 32) == 0


def test_sqlite_state_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    first = SqliteJobStore(path)
    job = first.create(_job())
    first.update(job.job_id, stage="indexing", progress=0.9)
    first.claim_video("films", job.video_id, job.job_id)
    first.close()
    again = SqliteJobStore(path)
    reopened = again.require(job.job_id)
    assert (reopened.stage, reopened.progress, reopened.metadata) == (JobStage.INDEXING, 0.9, job.metadata)
    assert again.video_owner("films", job.video_id) == job.job_id
    again.close()


@pytest.mark.redis
def test_redis_state_is_shared_between_clients(redis_url: str, redis_prefix: str) -> None:
    api, worker = RedisJobStore(redis_url, redis_prefix), RedisJobStore(redis_url, redis_prefix)
    job = api.create(_job())
    worker.update(job.job_id, stage="done", progress=1.0, clips=3)
    assert api.require(job.job_id).stage is JobStage.DONE
    with pytest.raises(ValueError, match="exists"):
        worker.create(job)
    api.close()
    worker.close()


def test_problems_of_a_damaged_file_are_stored_replaced_and_exported(store: JobStore) -> None:
    job = store.create(_job())
    assert store.require(job.job_id).problems == []
    lines = [
        "reading stopped at 3.10 s: End of file",
        "only 3.20 s of the 8.00 s the header declares decoded",
    ]
    assert store.update(job.job_id, problems=lines).problems == lines
    assert store.require(job.job_id).problems == lines
    assert store.require(job.job_id).to_dict()["problems"] == lines
    # A decode that runs again replaces the list rather than adding to it.
    assert store.update(job.job_id, problems=[]).problems == []
    created_with = store.create(_job(problems=["gap"]))
    assert store.require(created_with.job_id).problems == ["gap"]


_OLD_SQLITE_SCHEMA = """
CREATE TABLE jobs (
    job_id TEXT PRIMARY KEY, collection TEXT NOT NULL, video_id TEXT NOT NULL, source TEXT NOT NULL,
    video_file TEXT NOT NULL, metadata TEXT NOT NULL, stage TEXT NOT NULL, progress REAL NOT NULL,
    reason TEXT, duplicate_of TEXT, clips INTEGER NOT NULL, attempts INTEGER NOT NULL,
    created_at REAL NOT NULL, updated_at REAL NOT NULL
);
INSERT INTO jobs VALUES ('old', 'films', 'ab', 'cat.mp4', 'ab.mp4', '{}', 'done', 1.0, NULL, NULL, 2, 1, 1.0, 1.0);
"""


def test_sqlite_db_made_before_problems_opens_with_its_jobs_and_takes_problems(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "jobs.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(_OLD_SQLITE_SCHEMA)
    store = SqliteJobStore(path)
    old = store.require("old")
    assert (old.stage, old.clips, old.problems) == (JobStage.DONE, 2, [])
    assert store.update("old", problems=["gap"]).problems == ["gap"]
    fresh = store.create(_job(problems=["cut"]))
    assert store.require(fresh.job_id).problems == ["cut"]
    store.close()
    SqliteJobStore(path).close()  # opening an up-to-date database again adds nothing


@pytest.mark.redis
def test_redis_job_written_before_problems_reads_as_no_problems(redis_url: str, redis_prefix: str) -> None:
    store = RedisJobStore(redis_url, redis_prefix)
    job = store.create(_job())
    store._redis.hdel(store._job_key(job.job_id), "problems")  # as an older worker wrote it
    assert store.require(job.job_id).problems == []
    store.close()
