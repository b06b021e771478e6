"""Celery's Redis result backend, minus the result subscription it opens for every task sent.

Celery's own backend subscribes to a task's result channel as the task is sent, so that a later
``AsyncResult.get()`` can wait on it. Nothing here ever waits that way: the API and ``videoseek reindex`` read a
task's state by key (``AsyncResult.state``, polled). The subscription was one more Redis call in every send, on a
connection its retries (20 by default) kept reconnecting for about a minute while Redis hung, and the set of
subscribed tasks grew for the life of the process. Workers never subscribed (their joins would block).
"""

from __future__ import annotations

from typing import Any

from celery.backends.redis import RedisBackend

# What Celery's ``result_backend`` names before the URL ("<class>+redis://..."): by_url() loads this class.
BACKEND_PATH = "worker.result_backend:StateOnlyRedisBackend"


class StateOnlyRedisBackend(RedisBackend):
    """Stores and reads task states and results exactly as Celery's Redis backend does."""

    def on_task_call(self, producer: Any, task_id: str) -> None:
        """Nothing to do: a sent task's result is read by key when asked for, never waited on."""
