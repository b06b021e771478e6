"""The embedded runner: transient store errors are retried with backoff, other errors fail only their job."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from videoseek.collections import create_collection, shared_store
from videoseek.ingest.pipeline import MAX_EMBED_ATTEMPTS, PipelineContext
from videoseek.ingest.submit import IngestQueueFull, get_job, submit_ingest
from videoseek.jobs import JobNotFound, JobStage
from videoseek.runtime.embedded_runner import EmbeddedRunner, start_embedded_runner, stop_embedded_runner
from videoseek.settings import Settings, get_settings
from videoseek.store import ClipPoint, ClipStore, InvalidPoint, StoreUnavailable


class FlakyStore:
    """A real store whose ``upsert`` raises ``error`` for the first ``failures`` calls."""

    def __init__(self, inner: ClipStore, failures: int, error: Exception) -> None:
        self.inner, self.failures, self.error, self.upserts = inner, failures, error, 0

    def upsert(self, name: str, points: Sequence[ClipPoint], physical: str | None = None) -> None:
        self.upserts += 1
        if self.upserts <= self.failures:
            raise self.error
        self.inner.upsert(name, points, physical)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def quick_retries(embedded: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("VIDEOSEEK_WORKER__MAX_RETRIES", "2")
    monkeypatch.setenv("VIDEOSEEK_WORKER__RETRY_BACKOFF_MAX_S", "1")
    get_settings.cache_clear()
    return get_settings()


def _run_one(settings: Settings, store: FlakyStore, path: Any) -> tuple[Any, int]:
    context = PipelineContext.from_settings(settings)
    context.clip_store = store  # type: ignore[assignment]
    runner = start_embedded_runner(settings, recover=False, context_factory=lambda _s: context)
    job_id = submit_ingest("films", path, settings=settings).job_id
    assert runner.join(60)
    stop_embedded_runner()
    return get_job(job_id, settings), store.upserts


@pytest.mark.parametrize(
    ("failures", "stage", "upserts"),
    [(1, JobStage.DONE, 2), (5, JobStage.FAILED, 3)],  # recovers; gives up after 2 retries
)
def test_store_outages_are_retried_then_give_up(
    quick_retries: Settings, toy_videos: list[dict[str, Any]], failures: int, stage: JobStage, upserts: int
) -> None:
    create_collection(quick_retries, "films")
    flaky = FlakyStore(shared_store(quick_retries), failures, StoreUnavailable("connection refused"))
    job, calls = _run_one(quick_retries, flaky, toy_videos[0]["path"])
    assert (job.stage, calls) == (stage, upserts)
    if stage is JobStage.FAILED:
        assert "gave up after 2 retries" in job.reason and "connection refused" in job.reason
    else:
        assert shared_store(quick_retries).count("films") == job.clips == 2


def test_store_outages_retried_do_not_count_as_killed_embedding_attempts(
    embedded: Settings, toy_videos: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIDEOSEEK_WORKER__MAX_RETRIES", str(MAX_EMBED_ATTEMPTS + 1))
    monkeypatch.setenv("VIDEOSEEK_WORKER__RETRY_BACKOFF_MAX_S", "1")
    get_settings.cache_clear()
    settings = get_settings()
    create_collection(settings, "films")
    outages = MAX_EMBED_ATTEMPTS + 1  # more than the killed-attempt limit, within the retry budget
    flaky = FlakyStore(shared_store(settings), outages, StoreUnavailable("connection refused"))
    job, calls = _run_one(settings, flaky, toy_videos[0]["path"])
    assert (job.stage, calls) == (JobStage.DONE, outages + 1)


def test_a_permanent_store_error_fails_at_once(
    quick_retries: Settings, toy_videos: list[dict[str, Any]]
) -> None:
    create_collection(quick_retries, "films")
    flaky = FlakyStore(
        shared_store(quick_retries), 5, InvalidPoint("dimension 3 but the collection stores 128")
    )
    job, calls = _run_one(quick_retries, flaky, toy_videos[0]["path"])
    assert job.stage is JobStage.FAILED and calls == 1 and "dimension 3" in job.reason


class BlockingJobs:
    """A job store whose lookups wait for ``release``: keeps the runner's decode thread busy."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def require(self, job_id: str) -> Any:
        self.release.wait(30)
        raise JobNotFound(job_id)

    def get(self, job_id: str) -> None:
        return None


def test_a_full_queue_refuses_new_jobs_and_ignores_repeats(embedded: Settings) -> None:
    jobs = BlockingJobs()
    context = PipelineContext.from_settings(embedded)
    context.jobs = jobs  # type: ignore[assignment]
    runner = EmbeddedRunner(embedded, queue_size=1, context_factory=lambda _s: context).start(recover=False)
    try:
        runner.submit("a")  # taken by the decode thread, which now waits
        deadline = time.monotonic() + 10
        while runner._jobs.qsize() and time.monotonic() < deadline:
            time.sleep(0.01)
        runner.submit("b")  # fills the queue
        with pytest.raises(IngestQueueFull, match="queue is full"):
            runner.submit("c")
        runner.submit("b")  # already queued: not a second entry, not an error
        assert runner.pending() == 2
    finally:
        jobs.release.set()
        assert runner.join(10) and runner.pending() == 0
        runner.stop()
