"""The embedded runner: transient store errors are retried with backoff, other errors fail only their job."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import pytest

from videoseek.collections import create_collection
from videoseek.context import PipelineContext
from videoseek.ingest.pipeline import MAX_EMBED_ATTEMPTS
from videoseek.ingest.submit import IngestQueueFull, submit_file
from videoseek.jobs import JobNotFound, JobStage
from videoseek.runtime.embedded import embedded_context
from videoseek.runtime.ingest_threads import EmbeddedRunner
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


def _context(
    embedded: Settings, monkeypatch: pytest.MonkeyPatch, max_retries: int
) -> Iterator[PipelineContext]:
    """An embedded context (with collection "films") whose settings retry ``max_retries`` times, quickly."""
    monkeypatch.setenv("VIDEOSEEK_WORKER__MAX_RETRIES", str(max_retries))
    monkeypatch.setenv("VIDEOSEEK_WORKER__RETRY_BACKOFF_MAX_S", "1")
    get_settings.cache_clear()
    context = embedded_context(get_settings())
    create_collection(context, "films")
    yield context
    context.close()


@pytest.fixture
def quick_retries(embedded: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[PipelineContext]:
    yield from _context(embedded, monkeypatch, max_retries=2)


@pytest.fixture
def many_retries(embedded: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[PipelineContext]:
    yield from _context(embedded, monkeypatch, max_retries=MAX_EMBED_ATTEMPTS + 1)


def _run_one(context: PipelineContext, store: FlakyStore, path: Any) -> tuple[Any, int]:
    """Ingest ``path`` on a runner whose store is ``store``; the job and the upserts tried."""
    flaky = replace(context, open_store=lambda: store, _store=None, _store_lock=threading.Lock())
    runner = EmbeddedRunner(flaky).start(recover=False)
    job_id = submit_file(flaky, runner.submit, "films", path).job_id
    assert runner.join(60)
    runner.stop()
    return context.jobs.get(job_id), store.upserts


@pytest.mark.parametrize(
    ("failures", "stage", "upserts"),
    [(1, JobStage.DONE, 2), (5, JobStage.FAILED, 3)],  # recovers; gives up after 2 retries
)
def test_store_outages_are_retried_then_give_up(
    quick_retries: PipelineContext,
    toy_videos: list[dict[str, Any]],
    failures: int,
    stage: JobStage,
    upserts: int,
) -> None:
    flaky = FlakyStore(quick_retries.store, failures, StoreUnavailable("connection refused"))
    job, calls = _run_one(quick_retries, flaky, toy_videos[0]["path"])
    assert (job.stage, calls) == (stage, upserts)
    if stage is JobStage.FAILED:
        assert "gave up after 2 retries" in job.reason and "connection refused" in job.reason
    else:
        assert quick_retries.store.count("films") == job.clips == 2


def test_store_outages_retried_do_not_count_as_killed_embedding_attempts(
    many_retries: PipelineContext, toy_videos: list[dict[str, Any]]
) -> None:
    outages = MAX_EMBED_ATTEMPTS + 1  # more than the killed-attempt limit, within the retry budget
    flaky = FlakyStore(many_retries.store, outages, StoreUnavailable("connection refused"))
    job, calls = _run_one(many_retries, flaky, toy_videos[0]["path"])
    assert (job.stage, calls) == (JobStage.DONE, outages + 1)


def test_a_permanent_store_error_fails_at_once(
    quick_retries: PipelineContext, toy_videos: list[dict[str, Any]]
) -> None:
    flaky = FlakyStore(quick_retries.store, 5, InvalidPoint("dimension 3 but the collection stores 128"))
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


def test_a_full_queue_refuses_new_jobs_and_ignores_repeats(ctx: PipelineContext) -> None:
    jobs = BlockingJobs()
    context = replace(ctx, jobs=jobs)
    runner = EmbeddedRunner(context, queue_size=1).start(recover=False)
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
