"""Celery tasks: thin views that pass ids to plain functions (``ingest_steps.py``, the library's re-index, the
training package's retrain) and turn their outcomes into Celery's retries and states.

Two tasks per video, on two queues: ``decode`` (probe, sandboxed decode, frame cache, thumbnails; CPU) and
``embed`` (image tower, upsert; GPU when there is one). The frame cache on the shared data volume carries the
frames from one to the other. Both are idempotent, so a redelivered message simply redoes its step. Each task
reaches its worker process's state as ``self.app.process`` (``process.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, cast

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded

from videoseek.cancel import TaskCancelled
from worker.admin_state import REINDEX_TIME_LIMIT_S
from worker.names import (
    TASK_DECODE,
    TASK_EMBED,
    TASK_PLAYBACK,
    TASK_REINDEX,
    TASK_RETRAIN,
    TASK_ROLLBACK,
)
from worker.process import WorkerProcess

# The pipeline (PyAV, numpy, torch when it embeds) is imported inside the tasks: the Celery parent process
# imports this module to register the tasks, and must not load any of it.

log = logging.getLogger(__name__)


def process_of(task: Task) -> WorkerProcess:
    """The worker process's state, carried by the app the task belongs to (``celery_app.VideoseekCelery``)."""
    return cast(WorkerProcess, task.app.process)


def _job_id(args: Any, kwargs: Any) -> str | None:
    if args:
        return str(args[0])
    return None if not kwargs else kwargs.get("job_id")


class IngestTask(Task):
    """Late-acked, requeued when the worker dies; an unexpected error fails the job with a reason."""

    acks_late = True
    reject_on_worker_lost = True

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        job_id = _job_id(args, kwargs)
        if job_id is None:
            return
        # Also runs in the prefork parent for hard time limits: this touches no model and no clip store.
        from videoseek.ingest.pipeline import fail_job_quietly

        process = process_of(self)
        fail_job_quietly(
            process.context.jobs,
            process.layout,
            process.context.pairs,
            job_id,
            f"{self.name} failed: {exc!r}",
        )


@shared_task(name=TASK_DECODE, bind=True, base=IngestTask)
def decode_task(self: Task, job_id: str) -> str:
    """Probe and decode the job's video into the frame cache, then queue its embedding."""
    from videoseek.ingest.pipeline import fail_job
    from worker import ingest_steps
    from worker.retry import over_time, retry_or_fail, transient_errors

    process = process_of(self)
    try:
        return ingest_steps.decode(process, job_id, lambda job: self.app.send_task(TASK_EMBED, args=[job]))
    except transient_errors() as exc:
        retry_or_fail(self, process, job_id, exc)
    except SoftTimeLimitExceeded:
        fail_job(process.context, job_id, over_time(process, "decoding"))
    return "failed"


@shared_task(name=TASK_EMBED, bind=True, base=IngestTask)
def embed_task(self: Task, job_id: str) -> str:
    """Embed the job's cached frames, and those of other decoded jobs waiting, in shared batches; index them."""
    from videoseek.ingest.pipeline import fail_job
    from worker import ingest_steps
    from worker.embed_backlog import CLAIM_RECHECK_S
    from worker.retry import over_time, retry_or_fail, transient_errors

    process = process_of(self)
    try:
        outcome = ingest_steps.embed(
            process,
            job_id,
            self.request.id or job_id,
            lambda job: self.app.send_task(TASK_PLAYBACK, args=[job]),
        )
    except transient_errors() as exc:
        retry_or_fail(self, process, job_id, exc)
        return "failed"
    except SoftTimeLimitExceeded:
        fail_job(process.context, job_id, over_time(process, "embedding"))
        return "failed"
    if outcome == "claimed":
        # Another task is embedding this job in its batch. Look again later, as a new message: if that task
        # dies, its claim runs out and this job is embedded here.
        self.apply_async(args=[job_id], countdown=CLAIM_RECHECK_S)
    return outcome


@shared_task(name=TASK_PLAYBACK, bind=True, acks_late=True, reject_on_worker_lost=True)
def playback_task(self: Task, job_id: str) -> str:
    """Write the browser-playable copy of an indexed job's video (sandboxed FFmpeg; idempotent)."""
    from videoseek.ingest.playback import write_playback

    job = write_playback(process_of(self).context, job_id)
    return job.playback if job is not None else "gone"


@shared_task(
    name=TASK_REINDEX,
    bind=True,
    acks_late=False,  # never redelivered: a second copy would race the first; a lost run leaves the old version
    throws=(TaskCancelled,),  # an admin's cancel is an expected end: logged without a traceback
    soft_time_limit=REINDEX_TIME_LIMIT_S,
    time_limit=REINDEX_TIME_LIMIT_S + 60,
)
def reindex_task(
    self: Task, collection: str, adapter_version: str | None, allow_missing: bool = False
) -> dict[str, Any]:
    """Re-embed a collection from its frame cache with an installed adapter (or none) and switch to it."""
    from videoseek.reindex import reindex_to_version
    from worker.admin_slot import cancel_check, collection_slot

    process = process_of(self)
    report = _progress_reporter(self, "reindex")
    cancel = cancel_check(self, process.admin)
    with collection_slot(self, process.admin, collection):
        result = reindex_to_version(
            process.context,
            collection,
            adapter_version,
            allow_missing=allow_missing,
            progress=lambda step: report(step.to_dict()),
            cancel=cancel,
        )
    return {**result.to_dict(), "kind": "reindex"}


@shared_task(
    name=TASK_ROLLBACK,
    bind=True,
    acks_late=False,  # never redelivered, like the re-index: a second copy would race the first
    throws=(TaskCancelled,),
    soft_time_limit=REINDEX_TIME_LIMIT_S,
    time_limit=REINDEX_TIME_LIMIT_S + 60,
)
def rollback_task(self: Task, collection: str, physical: str) -> dict[str, Any]:
    """Put back a version of a collection kept for rollback (its vectors as they were; no decoding)."""
    from videoseek.reindex import rollback_to_version
    from worker.admin_slot import cancel_check, collection_slot

    process = process_of(self)
    report = _progress_reporter(self, "rollback")
    with collection_slot(self, process.admin, collection):
        result = rollback_to_version(
            process.context,
            collection,
            physical,
            progress=lambda step: report(step.to_dict()),
            cancel=cancel_check(self, process.admin),
        )
    return {**result.to_dict(), "kind": "rollback"}


@shared_task(
    name=TASK_RETRAIN,
    bind=True,
    acks_late=False,  # never redelivered, like the re-index it ends with
    throws=(TaskCancelled,),
    soft_time_limit=REINDEX_TIME_LIMIT_S,
    time_limit=REINDEX_TIME_LIMIT_S + 60,
)
def retrain_task(self: Task, collection: str, request: dict[str, Any]) -> dict[str, Any]:
    """Train a new adapter for a collection on a captions manifest, then re-index the collection with it."""
    from training.retrain import retrain_collection
    from videoseek.retraining import RetrainRequest
    from worker.admin_slot import cancel_check, collection_slot

    process = process_of(self)
    cancel = cancel_check(self, process.admin)
    with collection_slot(self, process.admin, collection):
        summary = retrain_collection(
            process.context,
            collection,
            RetrainRequest.from_dict(request),
            progress=_progress_reporter(self, "retrain"),
            cancel=cancel,
        )
    return {**summary, "kind": "retrain"}


def _progress_reporter(task: Task, kind: str) -> Callable[[dict[str, Any]], None]:
    """Progress into Celery's result backend (state PROGRESS), where the API reads it."""

    from worker.retry import transient_errors

    def report(progress: dict[str, Any]) -> None:
        if task.request.id and not task.request.is_eager:
            try:
                task.update_state(state="PROGRESS", meta={**progress, "kind": kind})
            except transient_errors() as exc:  # a Redis blip costs one report, not hours of training
                log.warning("task %s: progress not recorded (%s)", task.request.id, exc)

    return report
