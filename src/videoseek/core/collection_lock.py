"""One writer at a time per collection, for the short writes that must not interleave with a version switch.

A re-index (``worker/reindex.py``) fills a new physical version of a collection while ingest keeps writing
to the live one, then switches the alias. Three kinds of write take this lock, each only for a moment:

* ingest's indexing step: read the collection's adapter version, upsert the clips (``worker/pipeline.py``),
* deleting one video from the store (``core/collections.py``),
* the re-index's last step: copy what changed meanwhile, switch versions (held for seconds, not the run).

So no clip embedded with the old adapter lands in the new version, and no clip written to the old version
is dropped with it. Searches never take it.

Two backings, chosen like the job store: a Redis lock when ``redis_url`` is set (workers on many hosts; a
holder that dies frees it within ``LEASE_S``), else ``flock`` on a file in the data directory (one host;
the kernel frees it when its holder dies). Not re-entrant: a holder must not take it again.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from videoseek.core.layout import DataLayout, check_collection_name
from videoseek.core.redis_client import redis_client
from videoseek.core.settings import Settings
from videoseek.core.store import StoreUnavailable

log = logging.getLogger(__name__)

DEFAULT_WAIT_S = 600.0  # longer than a re-index's final step (catch-up + Edge optimize + switch)
LEASE_S = 60.0  # Redis: expiry of an abandoned lock; a live holder renews it every LEASE_S / 3
_POLL_S = 0.05

_clients: dict[tuple[str, float], Any] = {}
_clients_lock = threading.Lock()


class CollectionBusy(StoreUnavailable):
    """The collection's write lock was not free in time (a re-index is switching versions): retry later."""


def _busy(name: str, wait_s: float) -> CollectionBusy:
    return CollectionBusy(
        f"collection {name!r} stayed locked for {wait_s:.0f} s (a re-index is switching versions); retry later"
    )


@contextlib.contextmanager
def collection_write_lock(settings: Settings, name: str, *, wait_s: float = DEFAULT_WAIT_S) -> Iterator[None]:
    """Hold the collection's write lock; raises :class:`CollectionBusy` after ``wait_s`` seconds."""
    check_collection_name(name)
    if settings.redis_url is not None:
        client = _redis_client(settings.redis_url, settings.worker.redis_timeout_s)
        with _redis_lock(client, f"{settings.worker.redis_prefix}lock:collection:{name}", wait_s):
            yield
    else:
        with _file_lock(DataLayout(settings.data_dir).root / "locks" / f"{name}.lock", name, wait_s):
            yield


@contextlib.contextmanager
def _file_lock(path: Path, name: str, wait_s: float) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    # A descriptor per holding: flock excludes other descriptors of this process too, so threads wait.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise _busy(name, wait_s) from None
                time.sleep(_POLL_S)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _redis_client(url: str, timeout_s: float) -> Any:
    with _clients_lock:
        client = _clients.get((url, timeout_s))
        if client is None:
            client = _clients[(url, timeout_s)] = redis_client(url, timeout_s)
        return client


@contextlib.contextmanager
def _redis_lock(client: Any, key: str, wait_s: float) -> Iterator[None]:
    import redis

    name = key.rsplit(":", 1)[-1]
    lock = client.lock(key, timeout=LEASE_S, blocking_timeout=wait_s, thread_local=False)
    try:
        acquired = lock.acquire()
    except redis.RedisError as exc:
        raise StoreUnavailable(f"cannot lock collection {name!r}: Redis unavailable ({exc})") from exc
    if not acquired:
        raise _busy(name, wait_s)
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
        except redis.RedisError as exc:  # expired (holder stalled > LEASE_S) or Redis gone: nothing to undo
            log.warning("could not release the write lock of collection %r: %s", name, exc)


def _renew(lock: Any, stop: threading.Event) -> None:
    import redis

    while not stop.wait(LEASE_S / 3):
        try:
            lock.reacquire()
        except redis.RedisError as exc:
            log.warning("could not renew collection write lock %s: %s", lock.name, exc)
            return
