"""Embedded mode: all background work on threads of this one process (the API, or a CLI command).

Ingest jobs go through the two ingest threads (``ingest_threads.py``), admin tasks each get a thread
(``local_tasks.py``); job state and training pairs are SQLite files and the write locks ``flock`` files in the
data directory, and the clip store is Qdrant Edge under it (or a Qdrant server when one is configured). No
Redis, no Celery.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from videoseek.collection_lock import FileWriteLocks
from videoseek.context import PipelineContext
from videoseek.data_dir_lock import DataDirLock
from videoseek.embedding import FrameEmbedder
from videoseek.ingest.submit import SubmitResult, submit_file
from videoseek.jobs import SqliteJobStore
from videoseek.layout import DataLayout
from videoseek.pairs import PairDraft
from videoseek.pairs_sqlite import SqlitePairStore
from videoseek.runtime.base import AdminWork
from videoseek.runtime.ingest_threads import EmbeddedRunner
from videoseek.runtime.local_tasks import LocalAdminTasks
from videoseek.settings import Settings
from videoseek.store import open_store


def embedded_context(settings: Settings) -> PipelineContext:
    """The stores of one data directory as this process uses them alone."""
    layout = DataLayout(settings.data_dir)
    return PipelineContext(
        settings=settings,
        layout=layout,
        jobs=SqliteJobStore(layout.jobs_db),
        pairs=SqlitePairStore(layout.pairs_db),
        locks=FileWriteLocks(layout.locks_dir),
        embedder=FrameEmbedder(settings, layout),
        open_store=lambda: open_store(settings),
    )


class EmbeddedRuntime:
    """Threads of this process run ingest and admin tasks; nothing is started until :meth:`start`."""

    mode: Literal["embedded"] = "embedded"
    runs_elsewhere = False
    owns_data_dir = True
    queues = ("ingest",)

    def __init__(self, settings: Settings, work: AdminWork, *, queue_size: int | None = None) -> None:
        self.settings = settings
        self.context = embedded_context(settings)
        self.tasks = LocalAdminTasks(self.context, work)
        self.runner = EmbeddedRunner(self.context, queue_size=queue_size)
        self._data_dir: DataDirLock | None = None

    def hold_data_dir(self, command: str, *, api_url: str | None = None) -> None:
        if self._data_dir is None:
            self._data_dir = DataDirLock.acquire(self.settings.data_dir, command, api_url=api_url)

    def start(self, *, recover: bool = True) -> None:
        """Take the data directory (if the caller has not, as ``videoseek (embedded)``) and start the ingest
        threads, once; ``recover``: queue again this data dir's jobs that never finished."""
        self.hold_data_dir("videoseek (embedded)")
        if not self.runner.running:
            self.runner.start(recover=recover)

    def submit_ingest(
        self,
        collection: str,
        path: Path,
        source_name: str | None = None,
        metadata: dict[str, Any] | None = None,
        *,
        move: bool = False,
        pairs: Sequence[PairDraft] = (),
    ) -> SubmitResult:
        return submit_file(
            self.context, self.runner.submit, collection, path, source_name, metadata, move=move, pairs=pairs
        )

    def queue_depths(self) -> dict[str, float]:
        return {"ingest": float(self.runner.pending()) if self.runner.running else 0.0}

    def wait_idle(self, timeout_s: float | None = None) -> bool:
        return self.runner.join(timeout_s)

    def health_checks(self) -> dict[str, str]:
        return {}  # the job store is a file of this process: nothing to reach

    def close(self) -> None:
        self.tasks.close()  # before the store closes under a running re-index
        self.runner.stop()
        self.context.close()
        if self._data_dir is not None:  # last: nothing of this process writes there any more
            self._data_dir.release()
            self._data_dir = None
