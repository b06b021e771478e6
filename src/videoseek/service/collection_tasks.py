"""Admin tasks on a collection started over HTTP (re-index, retrain): on a thread of this process in embedded
mode, or on Celery's ``train`` queue in distributed mode.

Task ids have the form ``<collection>.<hex>``, so a status request names its collection without a lookup and a
key limited to some collections is checked before anything is read. The work itself is ``worker/reindex.py``
and ``worker/retrain.py`` either way; this module only starts it and reports where it is.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol

from videoseek.core.cancel import CancelCheck, TaskCancelled
from videoseek.core.layout import InvalidName, check_collection_name
from videoseek.core.settings import Settings
from videoseek.service.errors import Conflict

if TYPE_CHECKING:
    from videoseek.worker.embedding import FrameEmbedder
    from videoseek.worker.retrain import RetrainRequest

log = logging.getLogger(__name__)

KEPT_FINISHED = 1000  # finished tasks whose status an embedded server remembers
TaskKind = Literal["reindex", "retrain"]
TaskState = Literal["queued", "running", "done", "failed", "cancelled"]
FINISHED: tuple[TaskState, ...] = ("done", "failed", "cancelled")
Progress = Callable[[dict[str, Any]], None]
Work = Callable[[Progress, CancelCheck], dict[str, Any]]


@dataclass(frozen=True)
class TaskStatus:
    """Where one task is. ``progress``: its latest report (stage, counts); ``result`` once done."""

    task_id: str
    collection: str
    kind: TaskKind | None  # None: not known yet (a Celery task no worker has started)
    state: TaskState
    progress: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    reason: str | None = None
    cancel_requested: bool = False


class CollectionTasks(Protocol):
    def start_reindex(self, collection: str, adapter_version: str | None, allow_missing: bool) -> str:
        """Re-index ``collection`` to an installed adapter version (None: plain CLIP); returns the task id."""
        ...

    def start_retrain(self, collection: str, request: RetrainRequest) -> str:
        """Train a new adapter for ``collection`` and re-index with it; returns the task id."""
        ...

    def status(self, task_id: str) -> TaskStatus | None:
        """None when no such task is known."""
        ...

    def cancel(self, task_id: str) -> TaskStatus | None:
        """Ask a queued or running task to stop; its status then. None: no such task; Conflict: it ended."""
        ...

    def recent(self, collection: str, limit: int) -> list[TaskStatus]:
        """The collection's tasks, newest first: running or queued ones, and finished ones still known."""
        ...

    def forget(self, collection: str) -> None:
        """The collection was deleted: drop its finished tasks from :meth:`recent` (status by id stays)."""
        ...

    def close(self, timeout_s: float = 10.0) -> None:
        """At shutdown, before the store closes: let tasks of this process end (up to ``timeout_s``)."""
        ...


def _refuse_if_ended(status: TaskStatus) -> None:
    """Conflict: a task that has ended cannot be cancelled."""
    if status.state in FINISHED:
        raise Conflict(f"task {status.task_id} has ended ({status.state}): there is nothing to cancel")


def new_task_id(collection: str) -> str:
    return f"{collection}.{uuid.uuid4().hex}"


def task_collection(task_id: str) -> str | None:
    """The collection a task id was made for; None if it is not one of ours."""
    name, dot, rest = task_id.partition(".")
    if not dot or len(rest) != 32 or any(c not in "0123456789abcdef" for c in rest):
        return None
    try:
        return check_collection_name(name)
    except InvalidName:
        return None


class LocalCollectionTasks:
    """Embedded mode: each task on its own daemon thread, one task at a time per collection.

    Status lives in memory: after a restart finished tasks are forgotten, and a task cut short by the restart
    never switched the collection, which still serves its old version (run it again).
    """

    def __init__(self, settings: Settings, embedder: Callable[[], FrameEmbedder | None]) -> None:
        self._settings = settings
        self._embedder = embedder  # the in-process ingest runner's: one image tower per process
        self._tasks: dict[str, TaskStatus] = {}  # insertion order: oldest first
        self._running: dict[str, str] = {}  # collection -> task id
        self._threads: dict[str, threading.Thread] = {}  # task id -> its thread, while it runs
        self._cancels: dict[str, threading.Event] = {}  # task id -> set to stop it, while it runs
        self._cancel_reasons: dict[str, str] = {}  # task id -> why it was stopped, while it runs
        self._lock = threading.Lock()

    def start_reindex(self, collection: str, adapter_version: str | None, allow_missing: bool) -> str:
        def work(progress: Progress, cancel: CancelCheck) -> dict[str, Any]:
            from videoseek.worker.reindex import reindex_to_version

            result = reindex_to_version(
                self._settings,
                collection,
                adapter_version,
                allow_missing=allow_missing,
                progress=lambda step: progress(step.to_dict()),
                embedder=self._embedder(),
                cancel=cancel,
            )
            return result.to_dict()

        return self._launch(collection, "reindex", work)

    def start_retrain(self, collection: str, request: RetrainRequest) -> str:
        def work(progress: Progress, cancel: CancelCheck) -> dict[str, Any]:
            from videoseek.worker.retrain import retrain_collection

            return retrain_collection(
                self._settings,
                collection,
                request,
                progress=progress,
                embedder=self._embedder(),
                cancel=cancel,
            )

        return self._launch(collection, "retrain", work)

    def status(self, task_id: str) -> TaskStatus | None:
        with self._lock:
            return self._tasks.get(task_id)

    def recent(self, collection: str, limit: int) -> list[TaskStatus]:
        with self._lock:
            mine = [status for status in self._tasks.values() if status.collection == collection]
        return mine[::-1][:limit]

    def forget(self, collection: str) -> None:
        with self._lock:
            for task_id, status in list(self._tasks.items()):
                if status.collection == collection and status.state in FINISHED:
                    del self._tasks[task_id]

    def cancel(self, task_id: str) -> TaskStatus | None:
        with self._lock:
            status = self._tasks.get(task_id)
            if status is None:
                return None
            _refuse_if_ended(status)
            self._cancel(task_id, "cancelled by an admin")
            status = self._tasks[task_id] = replace(status, cancel_requested=True)
            return status

    def _cancel(self, task_id: str, why: str) -> None:
        """Stop a running task at its next cancel point (called with the lock held)."""
        self._cancel_reasons.setdefault(task_id, why)
        self._cancels[task_id].set()

    def _launch(self, collection: str, kind: TaskKind, work: Work) -> str:
        with self._lock:
            running = self._running.get(collection)
            if running is not None:
                raise Conflict(f"collection {collection!r} is busy with task {running}: wait for it to end")
            task_id = new_task_id(collection)
            self._running[collection] = task_id
            self._tasks[task_id] = TaskStatus(task_id, collection, kind, "queued")
            self._forget_oldest_finished()
            thread = threading.Thread(
                target=self._run, args=(task_id, collection, work), name=f"{kind}-{collection}", daemon=True
            )
            self._threads[task_id] = thread
            self._cancels[task_id] = threading.Event()
        thread.start()
        return task_id

    def close(self, timeout_s: float = 10.0) -> None:
        with self._lock:
            threads = list(self._threads.items())
            for task_id in self._cancels:  # a daemon thread would die mid-task: stop at a safe point
                self._cancel(task_id, "cancelled: the server shut down before it ended; start it again")
        deadline = time.monotonic() + timeout_s
        for task_id, thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():  # its version never went live: the collection keeps its old one
                log.warning("task %s still running at shutdown; it will not finish", task_id)

    def _forget_oldest_finished(self) -> None:
        """Keep the status of the last ``KEPT_FINISHED`` finished tasks (called with the lock held)."""
        finished = [t for t, status in self._tasks.items() if status.state in FINISHED]
        for task_id in finished[: max(0, len(finished) - KEPT_FINISHED)]:
            del self._tasks[task_id]

    def _update(self, task_id: str, **changes: Any) -> None:
        with self._lock:
            self._tasks[task_id] = replace(self._tasks[task_id], **changes)

    def _run(self, task_id: str, collection: str, work: Work) -> None:
        self._update(task_id, state="running")
        stop = self._cancels[task_id]

        def cancel() -> None:
            if stop.is_set():
                with self._lock:
                    why = self._cancel_reasons.get(task_id, "cancelled")
                raise TaskCancelled(f"task {task_id} {why}")

        try:
            result = work(lambda report: self._update(task_id, progress=report), cancel)
        except TaskCancelled as exc:
            log.info("task %s on %r cancelled", task_id, collection)
            self._update(task_id, state="cancelled", reason=str(exc))
        except Exception as exc:  # the task's failure is its status; the old version keeps serving
            log.warning("task %s on %r failed: %s", task_id, collection, exc)
            self._update(task_id, state="failed", reason=f"{type(exc).__name__}: {exc}")
        else:
            self._update(task_id, state="done", result=result)
        finally:
            with self._lock:
                self._running.pop(collection, None)
                self._threads.pop(task_id, None)
                self._cancels.pop(task_id, None)
                self._cancel_reasons.pop(task_id, None)


# Celery's states -> ours. PENDING is also what Celery says of an id it never saw: the id's form is checked
# before asking, and an unknown id of the right form reads as queued.
_CELERY_STATES: dict[str, TaskState] = {
    "PENDING": "queued",
    "RECEIVED": "queued",
    "STARTED": "running",
    "PROGRESS": "running",
    "RETRY": "running",
    "SUCCESS": "done",
    "FAILURE": "failed",
    "REVOKED": "cancelled",
}


class CeleryCollectionTasks:
    """Distributed mode: the ``videoseek.train.*`` tasks on workers of the ``train`` queue."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def start_reindex(self, collection: str, adapter_version: str | None, allow_missing: bool) -> str:
        from videoseek.worker.tasks import TASK_REINDEX

        return self._send(TASK_REINDEX, collection, [collection, adapter_version, allow_missing])

    def start_retrain(self, collection: str, request: RetrainRequest) -> str:
        from videoseek.worker.tasks import TASK_RETRAIN

        return self._send(TASK_RETRAIN, collection, [collection, request.to_dict()])

    def _send(self, task: str, collection: str, args: list[Any]) -> str:
        from redis import RedisError

        from videoseek.worker.celery_app import get_celery_app
        from videoseek.worker.tasks import ADMIN_TASK_EXPIRES_S, collection_task_slots, recent_admin_tasks

        task_id = new_task_id(collection)
        slots = collection_task_slots(self._settings)
        holder = slots.take(collection, task_id)  # the task takes it over when it starts, and frees it
        if holder != task_id:
            raise Conflict(f"collection {collection!r} is busy with task {holder}: wait for it to end")
        try:
            app = get_celery_app(self._settings)
            # Sent once, as ingest jobs are (worker/submit.py enqueue): no retries to multiply a hung Redis.
            app.send_task(task, args=args, task_id=task_id, expires=ADMIN_TASK_EXPIRES_S, retry=False)
        except BaseException:
            slots.release([collection], task_id)
            raise
        try:
            recent_admin_tasks(self._settings).add(collection, task_id)
        except RedisError as exc:  # it is queued all the same: only the collection's task list misses it
            log.warning("task %s is queued but not listed for %r: %s", task_id, collection, exc)
        return task_id

    def close(self, timeout_s: float = 10.0) -> None:
        """Nothing runs in this process: the workers own their tasks."""

    def recent(self, collection: str, limit: int) -> list[TaskStatus]:
        from videoseek.worker.tasks import ADMIN_TASK_EXPIRES_S, recent_admin_tasks, task_cancel_flags

        listed: list[TaskStatus] = []
        flags = task_cancel_flags(self._settings)
        for task_id, sent in recent_admin_tasks(self._settings).newest(collection, limit):
            status = self.status(task_id)
            if status is None:
                continue
            # Celery reads an id whose result has expired as PENDING: a task that started, or that waited
            # longer than it may, is not queued any more; its record is simply gone.
            gone = flags.has_started(task_id) or time.time() - sent > ADMIN_TASK_EXPIRES_S
            if status.state != "queued" or not gone:
                listed.append(status)
        return listed

    def forget(self, collection: str) -> None:
        from videoseek.worker.tasks import recent_admin_tasks

        recent_admin_tasks(self._settings).forget(collection)

    def cancel(self, task_id: str) -> TaskStatus | None:
        from videoseek.worker.tasks import task_cancel_flags

        status = self.status(task_id)
        if status is None:
            return None
        _refuse_if_ended(status)
        # No revoke: a revoked task would never run, so nothing would record its end. The flag's script frees
        # the collection at once if the task has not started (cancel_flags.py).
        task_cancel_flags(self._settings).request(task_id, status.collection)
        return replace(status, cancel_requested=True)

    def status(self, task_id: str) -> TaskStatus | None:
        from videoseek.worker.celery_app import get_celery_app
        from videoseek.worker.tasks import task_cancel_flags

        collection = task_collection(task_id)
        if collection is None:
            return None
        result = get_celery_app(self._settings).AsyncResult(task_id)
        state = _CELERY_STATES.get(result.state, "running")
        info = result.info
        # By name: Celery rebuilds a stored exception as a look-alike class when it cannot import the original.
        cancelled = type(info).__name__ == TaskCancelled.__name__
        if state == "failed" and cancelled:
            state = "cancelled"
        asked = task_cancel_flags(self._settings).requested(task_id)
        status = TaskStatus(task_id, collection, _kind_of(info), state, cancel_requested=asked)
        if state == "done" and isinstance(info, dict):
            return replace(status, result=info)
        if state == "cancelled":  # by an admin (TaskCancelled), or revoked: by an operator, or expired queued
            why = str(info) if cancelled else f"revoked ({info or 'by an operator'})"
            return replace(status, reason=why)
        if state == "failed":
            return replace(status, reason=f"{type(info).__name__}: {info}" if info else result.state.lower())
        if state == "running" and isinstance(info, dict):
            return replace(status, progress=info)
        return status


def _kind_of(info: object) -> TaskKind | None:
    """The tasks put their kind in their progress reports and results (Celery keeps no arguments)."""
    kind = info.get("kind") if isinstance(info, dict) else None
    return kind if kind in ("reindex", "retrain") else None


def collection_tasks_for(settings: Settings) -> CollectionTasks:
    """Where this process's HTTP-started tasks run, by mode."""
    if not settings.embedded:
        return CeleryCollectionTasks(settings)

    def runner_embedder() -> FrameEmbedder | None:
        from videoseek.worker.runner import running_embedded_runner

        runner = running_embedded_runner()  # none (store busy at start): the task loads its own tower
        return runner.context.embedder if runner is not None else None

    return LocalCollectionTasks(settings, runner_embedder)
