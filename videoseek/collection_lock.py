"""One writer at a time per collection, for the short writes that must not interleave with a version switch.

A re-index (``videoseek/reindex.py``) fills a new physical version of a collection while ingest keeps writing
to the live one, then switches the alias. Three kinds of write take this lock, each only for a moment:

* ingest's indexing step: read the collection's adapter version, upsert the clips (``videoseek/ingest/pipeline.py``),
* deleting one video from the store (``videoseek/collections.py``),
* the re-index's last step: copy what changed meanwhile, switch versions (held for seconds, not the run).

So no clip embedded with the old adapter lands in the new version, and no clip written to the old version
is dropped with it. Searches never take it.

Two backings of one interface (:class:`WriteLocks`), chosen with the run mode: ``flock`` on a file in the data
directory (:class:`FileWriteLocks`, embedded: one host; the kernel frees it when its holder dies) and a Redis
lock (``worker/redis_locks.py``, distributed: workers on many hosts; a holder that dies frees it within its
lease). Not re-entrant: a holder must not take it again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from videoseek.layout import check_collection_name
from videoseek.store import StoreUnavailable

DEFAULT_WAIT_S = 600.0  # longer than a re-index's final step (catch-up + Edge optimize + switch)
_POLL_S = 0.05


class CollectionBusy(StoreUnavailable):
    """The collection's write lock was not free in time (a re-index is switching versions): retry later."""


def collection_busy(name: str, wait_s: float) -> CollectionBusy:
    return CollectionBusy(
        f"collection {name!r} stayed locked for {wait_s:.0f} s (a re-index is switching versions); retry later"
    )


class WriteLocks(Protocol):
    """The per-collection write locks of one deployment."""

    def hold(self, name: str, *, wait_s: float = DEFAULT_WAIT_S) -> contextlib.AbstractContextManager[None]:
        """Hold collection ``name``'s write lock; raises :class:`CollectionBusy` after ``wait_s`` seconds."""
        ...


class FileWriteLocks:
    """``flock`` on ``<directory>/<collection>.lock``: every process of one host sharing a data directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @contextlib.contextmanager
    def hold(self, name: str, *, wait_s: float = DEFAULT_WAIT_S) -> Iterator[None]:
        path = self.directory / f"{check_collection_name(name)}.lock"
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
                        raise collection_busy(name, wait_s) from None
                    time.sleep(_POLL_S)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
