"""Admin tasks of embedded mode: each on its own thread of this process, one at a time per collection.

Status lives in memory: after a restart finished tasks are forgotten, and a task cut short by the restart
never switched the collection, which still serves its old version (run it again).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from videoseek.cancel import CancelCheck, TaskCancelled
from videoseek.context import PipelineContext
from videoseek.reindex import reindex_to_version, rollback_to_version
from videoseek.retraining import RetrainRequest
from videoseek.runtime.base import (
    FINISHED,
    AdminWork,
    Progress,
    TaskKind,
    TaskStatus,
    collection_busy,
    new_task_id,
    refuse_if_ended,
)

log = logging.getLogger(__name__)

KEPT_FINISHED = 1000  # finished tasks whose status an embedded server remembers
Work = Callable[[Progress, CancelCheck], dict[str, Any]]


class LocalAdminTasks:
    """Each task on its own daemon thread of this process, one task at a time per collection."""

    def __init__(self, context: PipelineContext, work: AdminWork) -> None:
        self._context = context  # the process's: its image tower is shared with ingest
        self._work = work
        self._tasks: dict[str, TaskStatus] = {}  # insertion order: oldest first
        self._running: dict[str, str] = {}  # collection -> task id
        self._threads: dict[str, threading.Thread] = {}  # task id -> its thread, while it runs
        self._cancels: dict[str, threading.Event] = {}  # task id -> set to stop it, while it runs
        self._cancel_reasons: dict[str, str] = {}  # task id -> why it was stopped, while it runs
        self._lock = threading.Lock()

    def start_reindex(self, collection: str, adapter_version: str | None, allow_missing: bool) -> str:
        def work(progress: Progress, cancel: CancelCheck) -> dict[str, Any]:
            result = reindex_to_version(
                self._context,
                collection,
                adapter_version,
                allow_missing=allow_missing,
                progress=lambda step: progress(step.to_dict()),
                cancel=cancel,
            )
            return result.to_dict()

        return self._launch(collection, "reindex", work)

    def start_retrain(self, collection: str, request: RetrainRequest) -> str:
        self._work.check_retrain(self._context, collection, request)

        def work(progress: Progress, cancel: CancelCheck) -> dict[str, Any]:
            return self._work.retrain(self._context, collection, request, progress, cancel)

        return self._launch(collection, "retrain", work)

    def start_rollback(self, collection: str, physical: str) -> str:
        def work(progress: Progress, cancel: CancelCheck) -> dict[str, Any]:
            result = rollback_to_version(
                self._context,
                collection,
                physical,
                progress=lambda step: progress(step.to_dict()),
                cancel=cancel,
            )
            return result.to_dict()

        return self._launch(collection, "rollback", work)

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
            refuse_if_ended(status)
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
                raise collection_busy(collection, running)
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
