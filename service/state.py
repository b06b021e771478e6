"""What one running app holds (built by the lifespan in ``main.py``), and the URLs it hands out."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote

from service.auth import KeyRing, MediaSigner
from service.errors import Unavailable
from service.metrics import ServiceMetrics
from service.model import QueryModel
from service.pagination import CursorCodec
from service.redis_lane import RedisLane
from service.relevance import RelevanceCalibrator
from service.search_engine import SearchEngine
from videoseek.context import PipelineContext
from videoseek.jobs import JobStore
from videoseek.layout import DataLayout
from videoseek.runtime.base import AdminTasks, Runtime
from videoseek.settings import Settings
from videoseek.store import ClipStore

STORE_RETRY_S = 5.0


@dataclass
class AppServices:
    """The long-lived objects of one app instance. Handlers reach them through ``deps.py``."""

    settings: Settings
    layout: DataLayout
    keys: KeyRing
    signer: MediaSigner
    cursors: CursorCodec
    metrics: ServiceMetrics
    model: QueryModel
    runtime: Runtime  # where uploads and admin tasks run: threads of this process, or Celery workers
    redis_lane: RedisLane  # runs what touches Redis (jobs, tasks) off the threads searches use
    # Opens the store and builds the engine; retried (at most every STORE_RETRY_S) while it fails, e.g. while
    # another process still holds the embedded store's directory.
    connect: Callable[[AppServices], None] | None = None
    store: ClipStore | None = None
    store_error: str | None = None
    engine: SearchEngine | None = None
    # Relevance calibrations of the collection versions searched lately (service/relevance.py).
    relevance: RelevanceCalibrator = field(default_factory=RelevanceCalibrator)
    _last_attempt: float = field(default=0.0, repr=False)

    @property
    def context(self) -> PipelineContext:
        """The process's stores and image tower (shared with the work its runtime runs here)."""
        return self.runtime.context

    @property
    def jobs(self) -> JobStore:
        return self.runtime.context.jobs

    @property
    def tasks(self) -> AdminTasks:
        """Re-index and retrain started over HTTP (in this process, or on Celery)."""
        return self.runtime.tasks

    def _retry_connect(self) -> None:
        now = time.monotonic()
        if self.connect is None or now - self._last_attempt < STORE_RETRY_S:
            return
        self._last_attempt = now
        self.connect(self)

    def require_store(self) -> ClipStore:
        if self.store is None:
            self._retry_connect()
        if self.store is None:
            raise Unavailable(f"the vector store is unavailable: {self.store_error or 'not opened'}")
        return self.store

    def require_engine(self) -> SearchEngine:
        self.require_store()
        if self.engine is None:
            raise Unavailable(f"search is unavailable: {self.store_error or 'starting up'}")
        return self.engine

    @property
    def signer_if_needed(self) -> MediaSigner | None:
        """Media URLs only need signatures when API keys are required."""
        return None if self.keys.is_open else self.signer


@dataclass(frozen=True)
class MediaLinks:
    """Builds the thumbnail and playback URLs of search results and videos."""

    root_path: str
    signer: MediaSigner | None

    def _url(self, path: str) -> str:
        full = self.root_path + path
        return f"{full}?{self.signer.sign(full)}" if self.signer is not None else full

    def task(self, task_id: str) -> str:
        """Where an admin task's status is read (unsigned: it needs an admin key anyway)."""
        return f"{self.root_path}/tasks/{task_id}"

    def video_file(self, collection: str, video_id: str) -> str:
        return self._url(f"/collections/{quote(collection)}/videos/{video_id}/file")

    def playback_copy(self, collection: str, video_id: str) -> str:
        """The browser-playable copy of a video whose upload browsers cannot play."""
        return self._url(f"/collections/{quote(collection)}/videos/{video_id}/playback.mp4")

    def playback(self, collection: str, video_id: str, start_s: float, *, copy: bool) -> str:
        """Plays from start_s (a W3C media fragment, which <video> elements honour): the copy when there is one
        (``copy``), else the upload."""
        base = self.playback_copy(collection, video_id) if copy else self.video_file(collection, video_id)
        return f"{base}#t={round(float(start_s), 3)}"

    def thumbnail(self, collection: str, video_id: str, clip_index: int) -> str:
        return self._url(
            f"/collections/{quote(collection)}/videos/{video_id}/thumbnails/{int(clip_index)}.jpg"
        )
