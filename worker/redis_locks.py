"""The per-collection write locks of distributed mode: a Redis lock with a renewed lease.

The interface and its reasons are in ``videoseek/collection_lock.py``; this is its backing for workers on many
hosts. A holder that dies frees the lock within ``LEASE_S``; a live holder renews it every ``LEASE_S / 3``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

import redis

from videoseek.collection_lock import DEFAULT_WAIT_S, collection_busy
from videoseek.layout import check_collection_name
from videoseek.store import StoreUnavailable

log = logging.getLogger(__name__)

LEASE_S = 60.0  # expiry of an abandoned lock


class RedisWriteLocks:
    """Collection write locks as Redis keys ``<prefix>lock:collection:<name>`` on ``client``."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    @contextlib.contextmanager
    def hold(self, name: str, *, wait_s: float = DEFAULT_WAIT_S) -> Iterator[None]:
        key = f"{self._prefix}lock:collection:{check_collection_name(name)}"
        lock = self._client.lock(key, timeout=LEASE_S, blocking_timeout=wait_s, thread_local=False)
        try:
            acquired = lock.acquire()
        except redis.RedisError as exc:
            raise StoreUnavailable(f"cannot lock collection {name!r}: Redis unavailable ({exc})") from exc
        if not acquired:
            raise collection_busy(name, wait_s)
        stop = threading.Event()
        renewer = threading.Thread(target=_renew, args=(lock, stop), name=f"lock-{name}", daemon=True)
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join()
            try:
                lock.release()
            except (
                redis.RedisError
            ) as exc:  # expired (holder stalled > LEASE_S) or Redis gone: nothing to undo
                log.warning("could not release the write lock of collection %r: %s", name, exc)


def _renew(lock: Any, stop: threading.Event) -> None:
    while not stop.wait(LEASE_S / 3):
        try:
            lock.reacquire()
        except redis.RedisError as exc:
            log.warning("could not renew collection write lock %s: %s", lock.name, exc)
            return
