"""Celery embed tasks batch decoded videos across jobs, and no job is lost or embedded twice on the way.

The batching logic is a plain function (``embed_with_backlog``) run here in-process against the real Redis
job store and backlog, with real decoded toy videos; the Celery worker tests run it inside real workers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from videoseek.context import PipelineContext
from videoseek.jobs import JobStage
from videoseek.settings import Settings
from worker.embed_backlog import EmbedBacklog, embed_with_backlog

pytestmark = pytest.mark.redis

BIG = 10**6


@pytest.fixture
def settings(distributed_defaults: Settings) -> Settings:
    return distributed_defaults


@pytest.fixture
def decoded(
    settings: Settings, toy_videos: list[dict[str, Any]]
) -> Iterator[tuple[PipelineContext, list[str]]]:
    """Three toy videos decoded into the frame cache, waiting for embedding (no worker runs)."""
    from videoseek.collections import create_collection
    from videoseek.ingest.pipeline import decode_video
    from videoseek.ingest.submit import submit_file
    from worker.context import distributed_context

    ctx = distributed_context(settings)
    create_collection(ctx, "films")
    job_ids = []
    for record in toy_videos:
        job_id = submit_file(ctx, lambda _: None, "films", Path(record["path"])).job_id
        assert decode_video(ctx, job_id) is not None
        job_ids.append(job_id)
    yield ctx, job_ids
    ctx.close()


@pytest.fixture
def short_lived(settings: Settings) -> Iterator[EmbedBacklog]:
    """The same backlog, with claims that live one second (what a dead task's look like soon after)."""
    assert settings.redis_url is not None
    short = EmbedBacklog.from_url(settings.redis_url, settings.worker.redis_prefix, claim_ttl_s=1)
    yield short
    short.close()


@pytest.fixture
def backlog(settings: Settings) -> Iterator[EmbedBacklog]:
    assert settings.redis_url is not None
    backlog = EmbedBacklog.from_url(settings.redis_url, settings.worker.redis_prefix)
    yield backlog
    backlog.close()


def wait_in_line(ctx: PipelineContext, backlog: EmbedBacklog, *job_ids: str) -> None:
    """Put decoded jobs in the backlog, oldest first, with their frame counts, as their decode tasks do."""
    for job_id in job_ids:
        backlog.add(job_id, frames_of(ctx, job_id))


def frames_of(ctx: PipelineContext, job_id: str) -> int:
    return len(ctx.frame_cache("films").get(ctx.jobs.require(job_id).video_id)[1])


def count_forward_requests(ctx: PipelineContext) -> list[int]:
    """Spy on the embedder: how many videos each call embedded together."""
    calls: list[int] = []
    embed = ctx.embedder.embed

    def spy(requests: Any, progress: Any = None) -> Any:
        calls.append(len(requests))
        return embed(requests, progress=progress)

    ctx.embedder.embed = spy  # type: ignore[method-assign]
    return calls


def test_an_embed_task_takes_the_decoded_videos_waiting_into_one_batch(
    decoded: tuple[PipelineContext, list[str]], backlog: EmbedBacklog
) -> None:
    ctx, (first, second, third) = decoded
    wait_in_line(ctx, backlog, first, second, third)
    calls = count_forward_requests(ctx)

    outcome = embed_with_backlog(ctx, first, backlog, "task-1", max_videos=8, max_frames=BIG)

    assert sorted(outcome.embedded) == sorted([first, second, third]) and outcome.claimed_by is None
    assert calls == [3]  # one embedding call for the three videos: their frames share forward passes
    for job_id in (first, second, third):
        job = ctx.jobs.require(job_id)
        assert job.stage is JobStage.DONE and job.clips >= 1 and job.attempts == 1
        assert backlog.holder(job_id) is None  # claims released
    assert ctx.store.count("films") == sum(ctx.jobs.require(j).clips for j in (first, second, third))
    assert backlog.waiting() == []
    # The other two jobs' own messages arrive later: nothing is left to do, nothing is embedded twice.
    again = embed_with_backlog(ctx, second, backlog, "task-2", max_videos=8, max_frames=BIG)
    assert again.embedded == [] and again.claimed_by is None and calls == [3]


def test_a_batch_stops_at_its_video_limit_and_leaves_the_rest_waiting(
    decoded: tuple[PipelineContext, list[str]], backlog: EmbedBacklog
) -> None:
    ctx, (first, second, third) = decoded
    wait_in_line(ctx, backlog, first, second, third)
    outcome = embed_with_backlog(ctx, first, backlog, "task-1", max_videos=2, max_frames=BIG)
    assert outcome.embedded == [first, second]  # the oldest waiting job joined
    assert backlog.waiting() == [third] and ctx.jobs.require(third).stage is not JobStage.DONE
    # Without the video limit, the frame budget stops it: a task whose own video fills it takes no other.
    backlog.add("another-job", 1)
    by_frames = embed_with_backlog(ctx, third, backlog, "task-3", max_videos=8, max_frames=1)
    assert by_frames.embedded == [third] and backlog.waiting() == ["another-job"]


def test_a_video_claimed_by_a_running_task_is_left_to_it(
    decoded: tuple[PipelineContext, list[str]], backlog: EmbedBacklog
) -> None:
    ctx, (first, second, third) = decoded
    wait_in_line(ctx, backlog, first, second, third)
    assert backlog.claim(second, "busy-task") == "busy-task"  # another worker is embedding it right now

    outcome = embed_with_backlog(ctx, first, backlog, "task-1", max_videos=8, max_frames=BIG)
    assert sorted(outcome.embedded) == sorted([first, third])
    assert ctx.jobs.require(second).stage is not JobStage.DONE and backlog.holder(second) == "busy-task"
    # Its own message, meanwhile: told who holds it (the Celery task sends itself again for later).
    own = embed_with_backlog(ctx, second, backlog, "task-2", max_videos=8, max_frames=BIG)
    assert own.embedded == [] and own.claimed_by == "busy-task"


def test_claims_of_a_dead_task_run_out_and_its_videos_are_embedded_by_their_own_tasks(
    decoded: tuple[PipelineContext, list[str]], short_lived: EmbedBacklog
) -> None:
    ctx, (first, second, _) = decoded
    assert short_lived.claim(second, "killed-task") == "killed-task"
    held = embed_with_backlog(ctx, second, short_lived, "task-2", max_videos=1, max_frames=BIG)
    assert (held.taken, held.claimed_by) == (False, "killed-task")
    time.sleep(1.2)  # the killed task never refreshed its claim
    outcome = embed_with_backlog(ctx, second, short_lived, "task-2", max_videos=1, max_frames=BIG)
    assert outcome.embedded == [second] and ctx.jobs.require(second).stage is JobStage.DONE
    # A redelivered message keeps its task id: it takes its own live claim back, for a new lifetime.
    assert short_lived.claim(first, "task-1") == "task-1"
    time.sleep(0.6)
    assert short_lived.claim(first, "task-1") == "task-1"
    time.sleep(0.6)  # past the first lifetime: still held, so the second take extended it
    assert short_lived.holder(first) == "task-1"
    again = embed_with_backlog(ctx, first, short_lived, "task-1", max_videos=1, max_frames=BIG)
    assert again.embedded == [first]


def test_a_video_too_long_to_join_is_left_waiting_unread_and_shorter_ones_join(
    decoded: tuple[PipelineContext, list[str]], backlog: EmbedBacklog, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker import embed_backlog

    ctx, (first, second, third) = decoded
    backlog.add(first, frames_of(ctx, first))
    backlog.add(second, 10**6)  # a four-hour video, oldest in line
    backlog.add(third, frames_of(ctx, third))
    loaded: list[str] = []
    load = embed_backlog.load_decoded
    monkeypatch.setattr(embed_backlog, "load_decoded", lambda c, j: loaded.append(j) or load(c, j))
    budget = frames_of(ctx, first) + frames_of(ctx, third)
    outcome = embed_with_backlog(ctx, first, backlog, "task-1", max_videos=8, max_frames=budget)
    assert outcome.embedded == [first, third]  # the short one behind the long one joined
    assert loaded == [first, third]  # the long one was never decoded from the cache for nothing
    assert backlog.waiting() == [second] and backlog.holder(second) is None


def test_claims_stay_alive_while_a_batch_outlasts_their_lifetime(
    decoded: tuple[PipelineContext, list[str]], short_lived: EmbedBacklog
) -> None:
    ctx, (first, second, _) = decoded
    short = short_lived
    holders: list[tuple[str | None, str | None]] = []
    embed = ctx.embedder.embed

    def slow(requests: Any, progress: Any = None) -> Any:
        time.sleep(2.5)  # longer than the claims' lifetime: only the refreshing keeps them
        holders.append((short.holder(first), short.holder(second)))
        return embed(requests, progress=progress)

    ctx.embedder.embed = slow  # type: ignore[method-assign]
    short.add(second, frames_of(ctx, second))
    outcome = embed_with_backlog(ctx, first, short, "task-1", max_videos=8, max_frames=BIG)
    assert outcome.embedded == [first, second] and holders == [("task-1", "task-1")]
    assert (short.holder(first), short.holder(second)) == (None, None)  # released at the end


def test_a_video_that_breaks_the_batch_does_not_fail_the_tasks_own_job(
    decoded: tuple[PipelineContext, list[str]], backlog: EmbedBacklog
) -> None:
    from videoseek.adapter import AdapterNotFound

    ctx, (first, second, _) = decoded
    wait_in_line(ctx, backlog, second)
    embed = ctx.embedder.embed

    def broken_by_second(requests: Any, progress: Any = None) -> Any:
        if len(requests) > 1:  # the second job's adapter went missing: the shared forward pass fails
            raise AdapterNotFound("adapter 'gone' is not in the data directory")
        return embed(requests, progress=progress)

    ctx.embedder.embed = broken_by_second  # type: ignore[method-assign]
    outcome = embed_with_backlog(ctx, first, backlog, "task-1", max_videos=8, max_frames=BIG)
    assert outcome.embedded == [first] and ctx.jobs.require(first).stage is JobStage.DONE
    left = ctx.jobs.require(second)  # not failed for someone else's batch: its own task decides
    assert left.stage is not JobStage.FAILED and backlog.holder(second) is None
    assert left.attempts == 0  # a batch that raised is not an interrupted attempt (3 of those fail a job)


def test_claims_are_refreshed_and_released_only_by_their_owner(backlog: EmbedBacklog) -> None:
    assert backlog.claim("job-a", "owner") == "owner" and backlog.claim("job-a", "owner") == "owner"
    assert backlog.claim("job-a", "intruder") == "owner"
    assert backlog.refresh(["job-a"], "intruder") == 0 and backlog.release(["job-a"], "intruder") == 0
    assert backlog.refresh(["job-a"], "owner") == 1
    assert backlog.release(["job-a", "job-b"], "owner") == 1 and backlog.holder("job-a") is None
    backlog.add("job-c", 10)
    backlog.add("job-d", 10)
    assert backlog.claim("job-c", "someone") == "someone"
    assert backlog.claim_fitting("me", room=10) == "job-d"  # job-c left the backlog when it was claimed
    assert backlog.claim_fitting("me", room=10) is None and backlog.waiting() == []


def test_an_embed_task_whose_job_is_claimed_elsewhere_sends_itself_again_for_later(
    settings: Settings,
    decoded: tuple[PipelineContext, list[str]],
    backlog: EmbedBacklog,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from worker.celery_app import build_celery_app
    from worker.embed_backlog import CLAIM_RECHECK_S
    from worker.names import TASK_EMBED

    ctx, (first, _, _) = decoded
    app = build_celery_app(settings)
    app.process.use_context(ctx)
    task = app.tasks[TASK_EMBED]
    resent: list[tuple[list[str], int]] = []
    monkeypatch.setattr(task, "apply_async", lambda args, countdown: resent.append((args, countdown)))
    backlog.claim(first, "batching-task")

    assert task.apply(args=[first]).get() == "claimed"
    assert resent == [([first], CLAIM_RECHECK_S)]  # a new message: nothing is acked away and lost
    assert ctx.jobs.require(first).stage is not JobStage.DONE
    backlog.release([first], "batching-task")  # the batching task died before reaching this job
    assert task.apply(args=[first]).get() == "done" and len(resent) == 1


def test_the_embedded_runner_fails_only_the_video_that_breaks_its_batch(
    decoded: tuple[PipelineContext, list[str]],
) -> None:
    from dataclasses import replace

    from videoseek.ingest.pipeline import load_decoded
    from videoseek.runtime.ingest_threads import EmbeddedRunner
    from videoseek.store import InvalidPoint

    ctx, (first, second, third) = decoded
    broken = ctx.jobs.require(second).video_id
    store = ctx.store

    class RefusesOneVideo:
        def upsert(self, name: str, points: Any, physical: str | None = None) -> None:
            if any(point.video_id == broken for point in points):
                raise InvalidPoint(f"clip {broken!r}: vectors contain NaN")
            store.upsert(name, points, physical)

        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

    ctx = replace(ctx, _store=RefusesOneVideo())
    batch = [load_decoded(ctx, job_id) for job_id in (first, second, third)]
    EmbeddedRunner(ctx)._embed_batch(batch)  # type: ignore[arg-type]
    assert [ctx.jobs.require(j).stage for j in (first, second, third)] == [
        JobStage.DONE,
        JobStage.FAILED,
        JobStage.DONE,
    ]
    assert "NaN" in (ctx.jobs.require(second).reason or "")  # its own reason, not "internal error"
