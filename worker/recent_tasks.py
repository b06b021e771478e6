"""The admin tasks (re-index, retrain) sent for each collection, newest first, kept in Redis.

Celery's result backend can say where a task is, but not which tasks a collection had: the API records each
task id it sends here (a sorted set per collection, scored by the time it was sent), for as long as the
backend may still hold their state (``keep_s``: the longest a task may wait, run, and then be kept), and at
most ``keep_n`` per collection.
"""

from __future__ import annotations

import time
from typing import Any

from videoseek.runtime.base import RECENT_TASKS_LISTED as KEEP_PER_COLLECTION


class RecentTasks:
    """Sorted sets ``<prefix><collection>`` of task ids, scored by when they were sent."""

    def __init__(self, client: Any, prefix: str, keep_s: int, keep_n: int = KEEP_PER_COLLECTION) -> None:
        self._redis = client
        self._prefix = prefix
        self._keep_s = keep_s
        self._keep_n = keep_n

    def add(self, collection: str, task_id: str, now: float | None = None) -> None:
        sent = time.time() if now is None else now
        key = self._prefix + collection
        pipe = self._redis.pipeline()
        pipe.zadd(key, {task_id: sent})
        pipe.zremrangebyscore(key, "-inf", sent - self._keep_s)  # their results are gone too
        pipe.zremrangebyrank(key, 0, -(self._keep_n + 1))
        pipe.expire(key, self._keep_s)
        pipe.execute()

    def newest(self, collection: str, limit: int, now: float | None = None) -> list[tuple[str, float]]:
        """Up to ``limit`` (task id, sent at) pairs, newest first, sent within the last ``keep_s`` seconds."""
        oldest = (time.time() if now is None else now) - self._keep_s
        key = self._prefix + collection
        found = self._redis.zrevrangebyscore(key, "+inf", f"({oldest}", start=0, num=limit, withscores=True)
        return [(_text(task_id), float(sent)) for task_id, sent in found]

    def forget(self, collection: str) -> None:
        """A deleted collection's tasks: a new collection of that name starts with none."""
        self._redis.delete(self._prefix + collection)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
