"""Re-indexes started over HTTP: on a thread of this process (embedded mode) or on Celery's ``train`` queue.

Both hand out task ids of the form ``<collection>.<hex>``, so a status request names its collection without a
lookup and a key limited to some collections can be checked before anything is read. The work itself is
``worker/reindex.py`` either way; this module only starts it and reports where it is.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol

from videoseek.core.layout import InvalidName, check_collection_name
from videoseek.core.settings import Settings
from videoseek.service.errors import Conflict

if TYPE_CHECKING:
    from videoseek.worker.embedding import FrameEmbedder

log = logging.getLogger(__name__)

ReindexState = Literal["queued", "running", "done", "failed"]


@dataclass(frozen=True)
class ReindexStatus:
    """Where one re-index is. ``progress``: stage, videos done and total, clips; ``result`` once done."""

    task_id: str
    collection: str
    state: ReindexState
    progress: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    reason: str | None = None


class ReindexTasks(Protocol):
    def start(self, collection: str, adapter_version: str | None, allow_missing: bool) -> str:
        """Queue a re-index of ``collection`` to an installed adapter version (None: plain CLIP)."""
        ...

    def status(self, task_id: str) -> ReindexStatus | None:
        """None when no such task is known."""
        ...


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


class LocalReindexTasks:
    """Embedded mode: each re-index on its own daemon thread, one at a time per collection.

    Status lives in memory: after a restart finished tasks are forgotten, and a re-index cut short by the
    restart never switched, so the collection still serves its old version (run it again).
    """

    def __init__(self, settings: Settings, embedder: Callable[[], FrameEmbedder | None]) -> None:
        self._settings = settings
        self._embedder = embedder  # the in-process ingest runner's: one image tower per process
        self._tasks: dict[str, ReindexStatus] = {}
        self._running: dict[str, str] = {}  # collection -> task id
        self._lock = threading.Lock()

    def start(self, collection: str, adapter_version: str | None, allow_missing: bool) -> str:
        with self._lock:
            running = self._running.get(collection)
            if running is not None:
                raise Conflict(f"collection {collection!r} is being re-indexed already (task {running})")
            task_id = new_task_id(collection)
            self._running[collection] = task_id
            self._tasks[task_id] = ReindexStatus(task_id, collection, "queued")
        thread = threading.Thread(
            target=self._run,
            args=(task_id, collection, adapter_version, allow_missing),
            name=f"reindex-{collection}",
            daemon=True,
        )
        thread.start()
        return task_id

    def status(self, task_id: str) -> ReindexStatus | None:
        with self._lock:
            return self._tasks.get(task_id)

    def _update(self, task_id: str, **changes: Any) -> None:
        with self._lock:
            self._tasks[task_id] = replace(self._tasks[task_id], **changes)

    def _run(self, task_id: str, collection: str, adapter_version: str | None, allow_missing: bool) -> None:
        from videoseek.worker.reindex import ReindexProgress, reindex_to_version

        def report(progress: ReindexProgress) -> None:
            self._update(task_id, state="running", progress=progress.to_dict())

        self._update(task_id, state="running")
        try:
            result = reindex_to_version(
                self._settings,
                collection,
                adapter_version,
                allow_missing=allow_missing,
                progress=report,
                embedder=self._embedder(),
            )
        except Exception as exc:  # the task's failure is its status; the old version keeps serving
            log.warning("re-index task %s of %r failed: %s", task_id, collection, exc)
            self._update(task_id, state="failed", reason=f"{type(exc).__name__}: {exc}")
        else:
            self._update(task_id, state="done", result=result.to_dict())
        finally:
            with self._lock:
                self._running.pop(collection, None)


# Celery's states -> ours. PENDING is also what Celery says of an id it never saw: the id's form is checked
# before asking, and an unknown id of the right form reads as queued.
_CELERY_STATES: dict[str, ReindexState] = {
    "PENDING": "queued",
    "RECEIVED": "queued",
    "STARTED": "running",
    "PROGRESS": "running",
    "RETRY": "running",
    "SUCCESS": "done",
    "FAILURE": "failed",
    "REVOKED": "failed",
}


class CeleryReindexTasks:
    """Distributed mode: the ``videoseek.train.reindex`` task on a worker of the ``train`` queue."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def start(self, collection: str, adapter_version: str | None, allow_missing: bool) -> str:
        from videoseek.worker.celery_app import get_celery_app
        from videoseek.worker.tasks import TASK_REINDEX

        task_id = new_task_id(collection)
        get_celery_app(self._settings).send_task(
            TASK_REINDEX, args=[collection, adapter_version, allow_missing], task_id=task_id
        )
        return task_id

    def status(self, task_id: str) -> ReindexStatus | None:
        from videoseek.worker.celery_app import get_celery_app

        collection = task_collection(task_id)
        if collection is None:
            return None
        result = get_celery_app(self._settings).AsyncResult(task_id)
        state = _CELERY_STATES.get(result.state, "running")
        info = result.info
        status = ReindexStatus(task_id, collection, state)
        if state == "done" and isinstance(info, dict):
            return replace(status, result=info)
        if state == "failed":
            return replace(status, reason=f"{type(info).__name__}: {info}" if info else result.state.lower())
        if state == "running" and isinstance(info, dict):
            return replace(status, progress=info)
        return status


def reindex_tasks_for(settings: Settings) -> ReindexTasks:
    """Where this process's HTTP-started re-indexes run, by mode."""
    if not settings.embedded:
        return CeleryReindexTasks(settings)

    def runner_embedder() -> FrameEmbedder:
        from videoseek.worker.runner import get_embedded_runner

        return get_embedded_runner(settings).context.embedder

    return LocalReindexTasks(settings, runner_embedder)
