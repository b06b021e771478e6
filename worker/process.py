"""What one Celery worker process holds: its pipeline context, the embed backlog and the admin-task state.

Built empty with the app (``celery_app.py``) and filled on first use. In a prefork pool that use happens in
each forked child (:func:`start_worker_process` runs there, from ``worker_process_init``), so the parent never
touches torch, CUDA, a model or a store; tasks reach it as ``self.app.process``.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from videoseek.context import PipelineContext
from videoseek.layout import DataLayout
from videoseek.settings import Settings

if TYPE_CHECKING:
    from worker.admin_state import AdminState
    from worker.embed_backlog import EmbedBacklog

log = logging.getLogger(__name__)


class WorkerProcess:
    """The long-lived objects of one worker process, each made the first time a task needs it."""

    def __init__(self, settings: Settings, *, warm_model: bool = True) -> None:
        self.settings = settings
        self.layout = DataLayout(settings.data_dir)
        self.warm_model = warm_model
        self._context: PipelineContext | None = None
        self._backlog: EmbedBacklog | None = None
        self._admin: AdminState | None = None
        self._lock = threading.Lock()

    def _redis_url(self) -> str:
        if self.settings.redis_url is None:
            raise RuntimeError("Celery tasks run with VIDEOSEEK_REDIS_URL set (distributed mode)")
        return self.settings.redis_url

    @property
    def context(self) -> PipelineContext:
        """The pipeline context: Redis job store and locks, the clip store (opened at first use), CLIP."""
        with self._lock:
            if self._context is None:
                from worker.context import distributed_context

                self._context = distributed_context(self.settings)
            return self._context

    def use_context(self, context: PipelineContext) -> None:
        """Run this process's tasks on ``context`` (tests, and tasks run eagerly inside another process)."""
        with self._lock:
            self._context = context

    @property
    def backlog(self) -> EmbedBacklog:
        """The decoded jobs waiting to be embedded (``embed_backlog.py``)."""
        with self._lock:
            if self._backlog is None:
                from worker.embed_backlog import EmbedBacklog

                worker = self.settings.worker
                self._backlog = EmbedBacklog.from_url(
                    self._redis_url(), worker.redis_prefix, timeout_s=worker.redis_timeout_s
                )
            return self._backlog

    @property
    def admin(self) -> AdminState | None:
        """Admin tasks' slots, cancel flags and list; None without Redis (a task run eagerly, in-process)."""
        with self._lock:
            if self._admin is None and self.settings.redis_url is not None:
                from worker.admin_state import AdminState
                from worker.redis_client import redis_client

                timeout_s = self.settings.worker.redis_timeout_s
                client = redis_client(self.settings.redis_url, timeout_s, decode_responses=True)
                self._admin = AdminState.on(client, self.settings.worker.redis_prefix)
            return self._admin

    def close(self) -> None:
        """Release what was opened (an Edge store flushes); a no-op for what never was."""
        with self._lock:
            opened: list[Any] = [self._context, self._backlog, self._admin]
            self._context = self._backlog = self._admin = None
        for item in opened:
            if item is not None:
                item.close()


def allow_decoder_children() -> None:
    """Let this pool process start the decoder sandbox (standard-library multiprocessing).

    Celery's prefork pool (billiard) registers each pool process as the standard library's "current
    process": daemonic, which may not start children, and holding billiard's authentication key, which the
    standard library refuses to pickle for its fork server. The sandbox's children are always joined or
    killed by the task that started them, so both are adjusted for this pool process.
    """
    import multiprocessing.process as mp

    config: dict[str, Any] = mp.current_process()._config  # type: ignore[attr-defined]
    if config.get("daemon"):
        config["daemon"] = False
    stdlib_key: type[bytes] = mp.AuthenticationString  # type: ignore[attr-defined]
    key = config.get("authkey")
    if key is not None and not isinstance(key, stdlib_key):
        config["authkey"] = stdlib_key(bytes(key))  # the same key, as the standard library's type


def start_worker_process(process: WorkerProcess) -> None:
    """In each pool process after fork (never the prefork parent): allow the sandbox, load CLIP once."""
    allow_decoder_children()
    context = process.context
    if process.warm_model:
        try:
            context.embedder.load()
        except Exception:  # a broken model fails the embed tasks with a reason; the worker stays up
            log.exception("could not load the CLIP model at worker start")


def stop_worker_process(process: WorkerProcess) -> None:
    """On a clean exit: close this process's stores (never turn a clean exit into a crash)."""
    try:
        process.close()
    except Exception:
        log.exception("could not close the worker's stores")
