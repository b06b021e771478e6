"""Admins' requests to stop an admin task (re-index, retrain), kept in Redis where the task's worker looks.

The API sets a task's flag; the task reads it at its cancel points (``core/cancel.py``): at its start, so a
task cancelled while queued ends as soon as a worker takes it, and then between units of work. A flag lives
``CANCEL_FLAG_TTL_S``, longer than any task may wait and run.
"""

from __future__ import annotations

from typing import Any

from videoseek.core.cancel import CancelCheck, TaskCancelled

CANCEL_FLAG_TTL_S = 3 * 24 * 3600


class CancelFlags:
    """Keys ``<prefix><task id>`` that exist once the task was asked to stop."""

    def __init__(self, client: Any, prefix: str, ttl_s: int = CANCEL_FLAG_TTL_S) -> None:
        self._redis = client
        self._prefix = prefix
        self._ttl_s = ttl_s

    def request(self, task_id: str) -> None:
        """Ask the task to stop (idempotent)."""
        self._redis.set(self._prefix + task_id, "1", ex=self._ttl_s)

    def requested(self, task_id: str) -> bool:
        return bool(self._redis.exists(self._prefix + task_id))

    def check_for(self, task_id: str) -> CancelCheck:
        """The task's cancel check: raises ``TaskCancelled`` once its flag is set."""

        def check() -> None:
            if self.requested(task_id):
                raise TaskCancelled(f"task {task_id} was cancelled by an admin")

        return check
