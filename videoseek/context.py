"""What one process works on: its data directory, clip store, job store, pair store, write locks and image tower.

Built once per process by whoever decides where work runs (the embedded runtime in the API or a CLI command,
or a Celery worker process) and passed to every pipeline function, which therefore neither knows nor cares
where it runs. The clip store opens on first use: a Celery worker builds its context when it starts, and a
store that is busy or down then costs a retry of the first task, not the worker.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from videoseek.collection_lock import WriteLocks
from videoseek.embedding import FrameEmbedder
from videoseek.jobs import JobStore
from videoseek.layout import DataLayout
from videoseek.pairs import PairStore
from videoseek.settings import Settings
from videoseek.store import ClipStore

if TYPE_CHECKING:
    from videoseek.video import FrameCache


@dataclass
class PipelineContext:
    """The long-lived objects a pipeline function needs; shared by the threads of one process."""

    settings: Settings
    layout: DataLayout
    jobs: JobStore
    pairs: PairStore  # the collections' training pairs (captions, feedback, subtitles)
    locks: WriteLocks
    embedder: FrameEmbedder
    open_store: Callable[[], ClipStore]  # called once, when the store is first needed
    _store: ClipStore | None = field(default=None, repr=False)
    _store_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def store(self) -> ClipStore:
        """The clip store, opened on first use; ``StoreUnavailable`` (retry later) while it cannot be."""
        with self._store_lock:
            if self._store is None:
                self._store = self.open_store()
            return self._store

    @property
    def store_is_open(self) -> bool:
        return self._store is not None

    def frame_cache(self, collection: str) -> FrameCache:
        from videoseek.video import FrameCache  # PyAV comes with it: not for processes that never decode

        return FrameCache(self.layout.frames_dir(collection))

    def release_store(self) -> None:
        """Close the clip store until it is next needed: an Edge store admits one process at a time, and
        another one (a worker) may need it now."""
        with self._store_lock:
            store, self._store = self._store, None
        if store is not None:
            store.close()

    def close(self) -> None:
        """Close the store if it was opened (an Edge store admits one process: release it), the job and pair
        stores."""
        self.release_store()
        self.jobs.close()
        self.pairs.close()
