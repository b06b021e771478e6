"""Admins' requests to stop an admin task (re-index, retrain), kept in Redis where the task's worker looks.

The API sets a task's flag; the task reads it at its cancel points (``videoseek/cancel.py``). A task cancelled while
it waits in the queue must not keep its collection busy until a worker gets to it, so the two ends meet in
one Redis script each:

- cancelling sets the flag and, if the task has not started, frees the collection slot the API took for it;
- a task starting (``start``) marks itself started, after which a cancel leaves the slot to it (the task
  frees it as it ends), and ends at once if its flag is set (freeing the slot, if still its own). A second
  delivery of the same task finds the mark and ends without touching anything.

Flags and start marks live ``CANCEL_FLAG_TTL_S``; admin tasks expire in the queue before that
(``worker/tasks.py``), so a cancelled task can never outlive its flag and run.
"""

from __future__ import annotations

import logging
from typing import Any

from videoseek.cancel import CancelCheck, TaskCancelled

log = logging.getLogger(__name__)

CANCEL_FLAG_TTL_S = 3 * 24 * 3600

# KEYS: flag, started mark, collection slot. ARGV: task id, ttl. Returns 1 if the slot was freed.
_CANCEL = """
redis.call('SET', KEYS[1], '1', 'EX', ARGV[2])
if redis.call('EXISTS', KEYS[2]) == 0 and redis.call('GET', KEYS[3]) == ARGV[1] then
    redis.call('DEL', KEYS[3])
    return 1
end
return 0
"""

# KEYS: flag, started mark, collection slot. ARGV: task id, ttl. Returns START_RUN, START_CANCELLED or
# START_DUPLICATE (the mark was there: another delivery of this task has started; it must not touch the slot).
_START = """
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[2]) then
    return 2
end
if redis.call('EXISTS', KEYS[1]) == 1 then
    if redis.call('GET', KEYS[3]) == ARGV[1] then redis.call('DEL', KEYS[3]) end
    return 0
end
return 1
"""
START_CANCELLED, START_RUN, START_DUPLICATE = 0, 1, 2


class CancelFlags:
    """Keys ``<prefix><task id>`` that exist once the task was asked to stop (``<prefix>started:<task id>``
    once it started). ``slot_prefix``: where the collections' admin-task slots live (``OwnedKeys``)."""

    def __init__(self, client: Any, prefix: str, slot_prefix: str, ttl_s: int = CANCEL_FLAG_TTL_S) -> None:
        self._redis = client
        self._prefix = prefix
        self._slot_prefix = slot_prefix
        self._ttl_s = ttl_s
        self._cancel = client.register_script(_CANCEL)
        self._start = client.register_script(_START)

    def _keys(self, task_id: str, collection: str) -> list[str]:
        return [self._prefix + task_id, f"{self._prefix}started:{task_id}", self._slot_prefix + collection]

    def request(self, task_id: str, collection: str) -> bool:
        """Ask the task to stop (idempotent); True if it had not started and its collection is free now."""
        return bool(self._cancel(keys=self._keys(task_id, collection), args=[task_id, self._ttl_s]))

    def start(self, task_id: str, collection: str) -> int:
        """The task is starting: ``START_RUN``; ``START_CANCELLED`` if it was cancelled meanwhile (it must end;
        its slot is freed); ``START_DUPLICATE`` if a delivery of it started before (a message the broker handed
        out again: it must end without a trace, leaving the first one its slot and its status)."""
        return int(self._start(keys=self._keys(task_id, collection), args=[task_id, self._ttl_s]))

    def has_started(self, task_id: str) -> bool:
        return bool(self._redis.exists(f"{self._prefix}started:{task_id}"))

    def requested(self, task_id: str) -> bool:
        return bool(self._redis.exists(self._prefix + task_id))

    def check_for(self, task_id: str) -> CancelCheck:
        """The running task's cancel check: raises ``TaskCancelled`` once its flag is set. A Redis outage
        reads as "not cancelled": hours of training are not lost to a failover (it is checked again soon)."""
        import redis

        def check() -> None:
            try:
                cancelled = self.requested(task_id)
            except redis.RedisError as exc:
                log.warning("task %s: cannot read its cancel flag (%s); going on", task_id, exc)
                return
            if cancelled:
                raise TaskCancelled(f"task {task_id} was cancelled by an admin")

        return check
