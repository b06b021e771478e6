"""The collection slot and cancel check an admin task (re-index, retrain) runs under on a worker."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from celery import Task
from celery.exceptions import Ignore

from videoseek.cancel import CancelCheck, TaskCancelled, not_cancellable
from videoseek.reindex import ReindexError
from worker.admin_state import SLOT_LEASE_S, AdminState
from worker.cancel_flags import START_CANCELLED, START_DUPLICATE
from worker.owned_keys import kept_alive

log = logging.getLogger(__name__)


def cancel_check(task: Task, admin: AdminState | None) -> CancelCheck:
    """The running task's cancel check (none without Redis: nothing could ask it to stop)."""
    if admin is None or not task.request.id:
        return not_cancellable
    check: CancelCheck = admin.cancel_flags.check_for(task.request.id)
    return check


@contextmanager
def collection_slot(task: Task, admin: AdminState | None, collection: str) -> Iterator[None]:
    """Hold the collection's admin-task slot while ``task`` runs; refuse to run beside another task, or at all
    once cancelled (then ``TaskCancelled``). Without Redis (run eagerly in-process: tests, embedded tools)
    there is no other worker to meet."""
    if admin is None:
        yield
        return
    owner = task.request.id or f"{task.name}:{collection}"
    started = admin.cancel_flags.start(owner, collection)
    if started == START_DUPLICATE:  # the broker handed the message out again (visibility timeout)
        log.warning("task %s on %r has started before: this copy ends here", owner, collection)
        raise Ignore()  # records no state: the first delivery's status stands
    if started == START_CANCELLED:  # while it waited in the queue
        raise TaskCancelled(f"task {owner} was cancelled by an admin before it started")
    slots = admin.slots
    holder = slots.take(collection, owner, SLOT_LEASE_S)
    if holder != owner:
        raise ReindexError(f"collection {collection!r} is busy with task {holder}: run this one when it ends")
    try:
        with kept_alive(slots, [collection], owner, SLOT_LEASE_S):
            yield
    finally:
        slots.release([collection], owner)
