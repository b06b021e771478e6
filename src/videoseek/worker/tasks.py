"""Celery tasks: thin wrappers that pass job ids to the plain pipeline functions in ``pipeline.py``.

Two tasks per video, on two queues: ``decode`` (probe, sandboxed decode, frame cache, thumbnails; CPU) and
``embed`` (image tower, upsert; GPU when there is one). The frame cache on the shared data volume carries the
frames from one to the other. Both are idempotent, so a redelivered message simply redoes its step. An embed
task also takes other decoded jobs still waiting into its batch (``embed_backlog.py``).

Each worker process builds its own :class:`~videoseek.worker.pipeline.PipelineContext` (job store, CLIP; the
clip store opens at the first task), and the ``worker_process_init`` handler builds it right after the process
starts: in a prefork pool that is the forked child, so the parent never touches torch, CUDA or a model.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from celery import Task, shared_task
from celery.exceptions import Ignore, SoftTimeLimitExceeded
from celery.signals import worker_process_init, worker_process_shutdown, worker_shutdown
from celery.utils.time import get_exponential_backoff_interval

from videoseek.core.cancel import CancelCheck, TaskCancelled, not_cancellable
from videoseek.core.settings import Settings, get_settings
from videoseek.worker.celery_app import TASK_DECODE, TASK_EMBED

log = logging.getLogger(__name__)

# Routed to the ``train`` queue by the "videoseek.train.*" route (celery_app.py).
TASK_REINDEX = "videoseek.train.reindex"
TASK_RETRAIN = "videoseek.train.retrain"
REINDEX_TIME_LIMIT_S = 24 * 3600  # a re-index embeds every frame of the collection: not the ingest limits
# A collection's admin-task slot: taken by the API for as long as a task may wait in the queue, then held by
# the running task on a short lease it keeps renewing, so that a crashed task frees its collection quickly.
SLOT_QUEUED_S = 3600
SLOT_LEASE_S = 120
# An admin task still queued after this long is dropped (Celery's ``expires``): well within the lifetime of a
# cancel flag, so a cancel is never forgotten before the task it stops has run.
ADMIN_TASK_EXPIRES_S = 2 * 24 * 3600
SLOTS_KIND = "collection-task"  # the slots' key prefix, after the deployment's

_settings: Settings | None = None
_warm_model = True
_context: Any = None  # PipelineContext, imported lazily (it pulls in numpy, PyAV and, when used, torch)
_backlog: Any = None  # EmbedBacklog, likewise
_context_lock = threading.Lock()


def bind_settings(settings: Settings, *, warm_model: bool = True) -> None:
    """Settings the tasks of this process use; ``warm_model``: load CLIP at process start (embed workers)."""
    global _settings, _warm_model
    _settings = settings
    _warm_model = warm_model


def worker_context() -> Any:
    """This process's pipeline context, built on first use."""
    global _context
    with _context_lock:
        if _context is None:
            from videoseek.worker.pipeline import PipelineContext

            _context = PipelineContext.from_settings(_settings or get_settings())
        return _context


def embed_backlog() -> Any:
    """This process's view of the decoded jobs waiting to be embedded (see ``embed_backlog.py``)."""
    global _backlog
    with _context_lock:
        if _backlog is None:
            from videoseek.worker.embed_backlog import EmbedBacklog

            settings = _settings or get_settings()
            assert settings.redis_url is not None  # Celery tasks only run with Redis
            worker = settings.worker
            _backlog = EmbedBacklog.from_url(
                settings.redis_url, worker.redis_prefix, timeout_s=worker.redis_timeout_s
            )
        return _backlog


_admin_stores: dict[tuple[str, str, str, float], Any] = {}


def _admin_store(settings: Settings, kind: str, build: Callable[[Any, str], Any]) -> Any:
    """One store of ``kind`` per Redis, prefix and timeout in this process, over its own connection pool."""
    assert settings.redis_url is not None  # Celery tasks only run with Redis
    worker = settings.worker
    key = (settings.redis_url, worker.redis_prefix, kind, worker.redis_timeout_s)
    with _context_lock:
        if key not in _admin_stores:
            from videoseek.core.redis_client import redis_client

            client = redis_client(settings.redis_url, worker.redis_timeout_s, decode_responses=True)
            _admin_stores[key] = build(client, f"{worker.redis_prefix}{kind}:")
        return _admin_stores[key]


def collection_task_slots(settings: Settings) -> Any:
    """One admin task (re-index, retrain) per collection at a time, across API replicas and workers.

    The API takes a collection's slot, named by the task id, when it sends the task (409 if taken; it lasts
    ``SLOT_QUEUED_S`` while the task waits); the task takes it too (it is then its own; this also covers tasks
    sent by ``videoseek reindex``), keeps it on a ``SLOT_LEASE_S`` lease and releases it when it ends.
    """
    from videoseek.worker.owned_keys import OwnedKeys

    return _admin_store(settings, SLOTS_KIND, lambda client, prefix: OwnedKeys(client, prefix, SLOT_QUEUED_S))


def task_cancel_flags(settings: Settings) -> Any:
    """Admins' requests to stop admin tasks (``cancel_flags.py``), shared by the API and the workers."""
    from videoseek.worker.cancel_flags import CancelFlags

    slots = f"{settings.worker.redis_prefix}{SLOTS_KIND}:"
    return _admin_store(settings, "task-cancel", lambda client, prefix: CancelFlags(client, prefix, slots))


def recent_admin_tasks(settings: Settings) -> Any:
    """The admin tasks sent for each collection (``recent_tasks.py``), listed while their state may be known:
    the longest they may wait in the queue and run, plus how long Celery keeps their result after that."""
    from videoseek.worker.celery_app import RESULT_EXPIRES_S
    from videoseek.worker.recent_tasks import RecentTasks

    keep_s = ADMIN_TASK_EXPIRES_S + REINDEX_TIME_LIMIT_S + RESULT_EXPIRES_S
    return _admin_store(settings, "recent-tasks", lambda client, prefix: RecentTasks(client, prefix, keep_s))


def _cancel_check(task: Task) -> CancelCheck:
    """The running task's cancel check (none without Redis: nothing could ask it to stop)."""
    settings = _settings or get_settings()
    if settings.redis_url is None or not task.request.id:
        return not_cancellable
    check: CancelCheck = task_cancel_flags(settings).check_for(task.request.id)
    return check


@contextmanager
def _collection_slot(task: Task, collection: str) -> Iterator[None]:
    """Hold the collection's admin-task slot while ``task`` runs; refuse to run beside another task, or at all
    once cancelled (then ``TaskCancelled``)."""
    from videoseek.worker.reindex import ReindexError

    settings = _settings or get_settings()
    if settings.redis_url is None:  # run eagerly in-process (tests, embedded tools): no other worker to meet
        yield
        return
    from videoseek.worker.cancel_flags import START_CANCELLED, START_DUPLICATE
    from videoseek.worker.owned_keys import kept_alive

    slots = collection_task_slots(settings)
    owner = task.request.id or f"{task.name}:{collection}"
    started = task_cancel_flags(settings).start(owner, collection)
    if started == START_DUPLICATE:  # the broker handed the message out again (visibility timeout)
        log.warning("task %s on %r has started before: this copy ends here", owner, collection)
        raise Ignore()  # records no state: the first delivery's status stands
    if started == START_CANCELLED:  # while it waited in the queue
        raise TaskCancelled(f"task {owner} was cancelled by an admin before it started")
    holder = slots.take(collection, owner, SLOT_LEASE_S)
    if holder != owner:
        raise ReindexError(f"collection {collection!r} is busy with task {holder}: run this one when it ends")
    try:
        with kept_alive(slots, [collection], owner, SLOT_LEASE_S):
            yield
    finally:
        slots.release([collection], owner)


def _allow_decoder_children() -> None:
    """Let this pool process start the decoder sandbox (standard-library multiprocessing).

    Celery's prefork pool (billiard) registers each pool process as the standard library's "current
    process": daemonic, which may not start children, and holding billiard's authentication key, which the
    standard library refuses to pickle for its fork server. The sandbox's children are always joined or
    killed by the task that started them, so both are adjusted for this pool process.
    """
    import multiprocessing.process as mp

    config: dict[str, Any] = mp.current_process()._config  # type: ignore[attr-defined]
    if config.get("daemon"):
        config["daemon"] = False
    stdlib_key: type[bytes] = mp.AuthenticationString  # type: ignore[attr-defined]
    key = config.get("authkey")
    if key is not None and not isinstance(key, stdlib_key):
        config["authkey"] = stdlib_key(bytes(key))  # the same key, as the standard library's type


@worker_process_init.connect(weak=False, dispatch_uid="videoseek.worker.process_init")
def _init_worker_process(**_: Any) -> None:
    """In each pool process after fork (never the prefork parent): connect, and load CLIP once."""
    _allow_decoder_children()
    context = worker_context()
    if _warm_model:
        try:
            context.embedder.load()
        except Exception:  # a broken model fails the embed tasks with a reason; the worker stays up
            log.exception("could not load the CLIP model at worker start")


@worker_process_shutdown.connect(weak=False, dispatch_uid="videoseek.worker.process_shutdown")
@worker_shutdown.connect(weak=False, dispatch_uid="videoseek.worker.shutdown")
def _close_stores(**_: Any) -> None:
    """Close this process's stores on a clean exit (an Edge store flushes; a no-op where none was opened)."""
    from videoseek.core.collections import close_shared_stores

    global _backlog
    try:
        close_shared_stores()
        if _backlog is not None:
            _backlog.close()
            _backlog = None
    except Exception:  # shutting down anyway: never turn a clean exit into a crash
        log.exception("could not close the clip store")


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
        from videoseek.worker.pipeline import fail_job_quietly

        # Also runs in the prefork parent for hard time limits: fail_job_quietly needs no model.
        fail_job_quietly(_settings or get_settings(), job_id, f"{self.name} failed: {exc!r}")


def transient_errors() -> tuple[type[Exception], ...]:
    """Errors a task retries with backoff instead of failing its job.

    The vector store being unreachable (the pipeline's ``TransientError``), and Redis, which holds the job
    state in distributed mode, dropping or timing out a connection (a restart, a failover, a network blip):
    the job is fine, only this attempt could not read or write it. Every step is idempotent, so a retry
    simply redoes it.
    """
    import redis
    from kombu.exceptions import OperationalError

    from videoseek.worker.pipeline import TransientError

    # OperationalError: the broker refused a message this task sends on (the next step's task). ReadOnlyError
    # and BusyLoadingError: a Redis failover in progress (the API answers 503 for them too).
    return (
        TransientError,
        redis.ConnectionError,
        redis.TimeoutError,
        redis.exceptions.ReadOnlyError,
        redis.exceptions.BusyLoadingError,
        OperationalError,
    )


def _retry_or_fail(task: Task, job_id: str, exc: Exception) -> None:
    """Retry a transient error with exponential backoff; once retries run out, fail the job."""
    from videoseek.worker.pipeline import fail_job_quietly

    if task.request.retries >= task.max_retries:
        fail_job_quietly(
            _settings or get_settings(), job_id, f"gave up after {task.request.retries} retries: {exc}"
        )
        return
    countdown = get_exponential_backoff_interval(
        factor=2, retries=task.request.retries, maximum=task.retry_backoff_max, full_jitter=True
    )
    raise task.retry(exc=exc, countdown=countdown)


def _over_time(step: str) -> str:
    limit = (_settings or get_settings()).worker.task_soft_time_limit_s
    return f"{step} took longer than the {limit} s limit (VIDEOSEEK_WORKER__TASK_SOFT_TIME_LIMIT_S)"


@shared_task(name=TASK_DECODE, bind=True, base=IngestTask)
def decode_task(self: Task, job_id: str) -> str:
    """Probe and decode the job's video into the frame cache, then queue its embedding."""
    from videoseek.worker.pipeline import decode_video, fail_job

    context = worker_context()
    try:
        decoded = decode_video(context, job_id)
        if decoded is None:
            return str(context.jobs.require(job_id).stage)
        _queue_embedding(self, job_id, len(decoded.frames))
    except transient_errors() as exc:
        _retry_or_fail(self, job_id, exc)
        return "failed"
    except SoftTimeLimitExceeded:
        fail_job(context, job_id, _over_time("decoding"))
        return "failed"
    return "decoded"


def _queue_embedding(task: Task, job_id: str, frames: int) -> None:
    """Send the job's embed task. The backlog entry only lets an embed task already running take the job into
    its batch: without it (Redis refused, or a video longer than any batch takes), the job's own task still
    embeds it."""
    import redis

    from videoseek.worker.embed_backlog import BATCH_FORWARD_PASSES

    worker = (_settings or get_settings()).worker
    try:
        if frames <= BATCH_FORWARD_PASSES * worker.embed_batch_size:
            embed_backlog().add(job_id, frames)
    except redis.RedisError as exc:
        log.warning("job %s not in the embed backlog (%s): its own embed task will take it", job_id, exc)
    task.app.send_task(TASK_EMBED, args=[job_id])


@shared_task(name=TASK_EMBED, bind=True, base=IngestTask)
def embed_task(self: Task, job_id: str) -> str:
    """Embed the job's cached frames, and those of other decoded jobs waiting, in shared batches; index them."""
    from videoseek.worker.embed_backlog import BATCH_FORWARD_PASSES, CLAIM_RECHECK_S, embed_with_backlog
    from videoseek.worker.pipeline import fail_job

    context = worker_context()
    worker = context.settings.worker
    try:
        outcome = embed_with_backlog(
            context,
            job_id,
            embed_backlog(),
            self.request.id or job_id,
            max_videos=worker.embed_batch_videos,
            max_frames=BATCH_FORWARD_PASSES * worker.embed_batch_size,
        )
        if not outcome.taken:
            # Another task is embedding this job in its batch. Look again later, as a new message: if that
            # task dies, its claim runs out and this job is embedded here.
            self.apply_async(args=[job_id], countdown=CLAIM_RECHECK_S)
            return "claimed"
        return str(context.jobs.require(job_id).stage)
    except transient_errors() as exc:
        _retry_or_fail(self, job_id, exc)
        return "failed"
    except SoftTimeLimitExceeded:
        fail_job(context, job_id, _over_time("embedding"))
        return "failed"


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
    from videoseek.worker.reindex import reindex_to_version

    report = _progress_reporter(self, "reindex")
    cancel = _cancel_check(self)
    with _collection_slot(self, collection):
        result = reindex_to_version(
            _settings or get_settings(),
            collection,
            adapter_version,
            allow_missing=allow_missing,
            progress=lambda step: report(step.to_dict()),
            embedder=worker_context().embedder,
            cancel=cancel,
        )
    return {**result.to_dict(), "kind": "reindex"}


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
    from videoseek.worker.retrain import RetrainRequest, retrain_collection

    cancel = _cancel_check(self)
    with _collection_slot(self, collection):
        summary = retrain_collection(
            _settings or get_settings(),
            collection,
            RetrainRequest.from_dict(request),
            progress=_progress_reporter(self, "retrain"),
            embedder=worker_context().embedder,
            cancel=cancel,
        )
    return {**summary, "kind": "retrain"}


def _progress_reporter(task: Task, kind: str) -> Callable[[dict[str, Any]], None]:
    """Progress into Celery's result backend (state PROGRESS), where the API reads it."""

    def report(progress: dict[str, Any]) -> None:
        if task.request.id and not task.request.is_eager:
            try:
                task.update_state(state="PROGRESS", meta={**progress, "kind": kind})
            except transient_errors() as exc:  # a Redis blip costs one report, not hours of training
                log.warning("task %s: progress not recorded (%s)", task.request.id, exc)

    return report
