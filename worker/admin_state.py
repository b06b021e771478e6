"""What the API and the workers share about admin tasks (re-index, retrain) in Redis, on one connection pool.

* ``slots``: one admin task per collection at a time, across API replicas and workers. The API takes a
  collection's slot, named by the task id, when it sends the task (409 if taken; it lasts ``SLOT_QUEUED_S``
  while the task waits); the task takes it too (it is then its own; this also covers tasks sent by
  ``videoseek reindex``), keeps it on a ``SLOT_LEASE_S`` lease and releases it when it ends.
* ``cancel_flags``: admins' requests to stop tasks (``cancel_flags.py``).
* ``recent``: the tasks sent for each collection (``recent_tasks.py``), listed while their state may be known.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from worker.cancel_flags import CancelFlags
from worker.names import RESULT_EXPIRES_S
from worker.owned_keys import OwnedKeys
from worker.recent_tasks import RecentTasks

REINDEX_TIME_LIMIT_S = 24 * 3600  # a re-index embeds every frame of the collection: not the ingest limits
# A collection's admin-task slot: taken by the API for as long as a task may wait in the queue, then held by
# the running task on a short lease it keeps renewing, so that a crashed task frees its collection quickly.
SLOT_QUEUED_S = 3600
SLOT_LEASE_S = 120
# An admin task still queued after this long is dropped (Celery's ``expires``): well within the lifetime of a
# cancel flag, so a cancel is never forgotten before the task it stops has run.
ADMIN_TASK_EXPIRES_S = 2 * 24 * 3600
SLOTS_KIND = "collection-task"  # the slots' key prefix, after the deployment's
# A task id stays listed for as long as the result backend may know it: the longest it may wait in the queue
# and run, plus how long Celery keeps its result after that.
LISTED_S = ADMIN_TASK_EXPIRES_S + REINDEX_TIME_LIMIT_S + RESULT_EXPIRES_S


@dataclass(frozen=True)
class AdminState:
    """The three Redis structures of admin tasks under one deployment prefix."""

    slots: OwnedKeys
    cancel_flags: CancelFlags
    recent: RecentTasks
    client: Any  # decode_responses=True

    @classmethod
    def on(cls, client: Any, prefix: str) -> AdminState:
        """The admin state under ``prefix`` (the deployment's ``worker.redis_prefix``) on ``client``."""
        slots_prefix = f"{prefix}{SLOTS_KIND}:"
        return cls(
            slots=OwnedKeys(client, slots_prefix, SLOT_QUEUED_S),
            cancel_flags=CancelFlags(client, f"{prefix}task-cancel:", slots_prefix),
            recent=RecentTasks(client, f"{prefix}recent-tasks:", LISTED_S),
            client=client,
        )

    def close(self) -> None:
        self.client.close()
