"""Admin tasks of distributed mode as the API sees them: sent to the ``train`` queue, followed in Redis.

Status comes from Celery's result backend, which cannot tell an unknown id from a queued one (both are
PENDING): the id's form is checked first, and the collection's task list (``recent_tasks.py``) drops ids whose
result has expired.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

from celery import Celery
from redis import RedisError

from videoseek.cancel import TaskCancelled
from videoseek.context import PipelineContext
from videoseek.retraining import RetrainRequest
from videoseek.runtime.base import (
    TASK_KINDS,
    AdminWork,
    TaskKind,
    TaskState,
    TaskStatus,
    collection_busy,
    new_task_id,
    refuse_if_ended,
    task_collection,
)
from worker.admin_state import ADMIN_TASK_EXPIRES_S, AdminState
from worker.names import TASK_REINDEX, TASK_RETRAIN, TASK_ROLLBACK

log = logging.getLogger(__name__)

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


class CeleryAdminTasks:
    """The ``videoseek.train.*`` tasks on workers of the ``train`` queue, as the API sends and follows them."""

    def __init__(self, app: Celery, admin: AdminState, context: PipelineContext, work: AdminWork) -> None:
        self._app = app
        self._admin = admin
        self._context = context  # the API's: a retrain request is checked here before it is queued
        self._work = work

    def start_reindex(self, collection: str, adapter_version: str | None, allow_missing: bool) -> str:
        return self._send(TASK_REINDEX, collection, [collection, adapter_version, allow_missing])

    def start_rollback(self, collection: str, physical: str) -> str:
        return self._send(TASK_ROLLBACK, collection, [collection, physical])

    def start_retrain(self, collection: str, request: RetrainRequest) -> str:
        self._work.check_retrain(self._context, collection, request)
        return self._send(TASK_RETRAIN, collection, [collection, request.to_dict()])

    def _send(self, task: str, collection: str, args: list[Any]) -> str:
        task_id = new_task_id(collection)
        slots = self._admin.slots
        holder = slots.take(collection, task_id)  # the task takes it over when it starts, and frees it
        if holder != task_id:
            raise collection_busy(collection, holder)
        try:
            # Sent once, as ingest jobs are (runtime.py): no retries to multiply the wait on a hung Redis.
            self._app.send_task(task, args=args, task_id=task_id, expires=ADMIN_TASK_EXPIRES_S, retry=False)
        except BaseException:
            slots.release([collection], task_id)
            raise
        try:
            self._admin.recent.add(collection, task_id)
        except RedisError as exc:  # it is queued all the same: only the collection's task list misses it
            log.warning("task %s is queued but not listed for %r: %s", task_id, collection, exc)
        return task_id

    def close(self, timeout_s: float = 10.0) -> None:
        """Nothing runs in this process: the workers own their tasks."""

    def recent(self, collection: str, limit: int) -> list[TaskStatus]:
        listed: list[TaskStatus] = []
        flags = self._admin.cancel_flags
        for task_id, sent in self._admin.recent.newest(collection, limit):
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
        self._admin.recent.forget(collection)

    def cancel(self, task_id: str) -> TaskStatus | None:
        status = self.status(task_id)
        if status is None:
            return None
        refuse_if_ended(status)
        # No revoke: a revoked task would never run, so nothing would record its end. The flag's script frees
        # the collection at once if the task has not started (cancel_flags.py).
        self._admin.cancel_flags.request(task_id, status.collection)
        return replace(status, cancel_requested=True)

    def status(self, task_id: str) -> TaskStatus | None:
        collection = task_collection(task_id)
        if collection is None:
            return None
        result = self._app.AsyncResult(task_id)
        state = _CELERY_STATES.get(result.state, "running")
        info = result.info
        # By name: Celery rebuilds a stored exception as a look-alike class when it cannot import the original.
        cancelled = type(info).__name__ == TaskCancelled.__name__
        if state == "failed" and cancelled:
            state = "cancelled"
        asked = self._admin.cancel_flags.requested(task_id)
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
    return kind if kind in TASK_KINDS else None
