"""The FastAPI application: :func:`create_app` builds it; its lifespan opens what it needs, once.

On start: the data directory and server secret, the vector store, the job store, the query model (loaded
in the background, ``/readyz`` says when), and in embedded mode the data directory's writer lock (unless the
caller holds it already, as ``videoseek serve`` does) and the in-process ingest runner.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

import videoseek
from videoseek.core.layout import DataLayout, InvalidName
from videoseek.core.metadata import InvalidMetadata
from videoseek.core.settings import Settings, get_settings
from videoseek.core.store import (
    CollectionExists,
    CollectionNotFound,
    CollectionUnreadable,
    InvalidPoint,
    StoreUnavailable,
)
from videoseek.service import scoring
from videoseek.service.auth import KeyRing, MediaSigner, is_loopback
from videoseek.service.batching import QueryEmbedder
from videoseek.service.collection_tasks import collection_tasks_for
from videoseek.service.errors import install_error_handlers
from videoseek.service.frame_vector_cache import FrameVectorCache
from videoseek.service.metrics import RequestMetricsMiddleware, ServiceMetrics
from videoseek.service.model import QueryModel
from videoseek.service.pagination import CursorCodec
from videoseek.service.redis_lane import RedisLane
from videoseek.service.routers import collections, health, jobs, media, search, tasks, videos
from videoseek.service.search_engine import SearchEngine
from videoseek.service.secret import load_or_create_secret
from videoseek.service.state import AppServices
from videoseek.service.uploads import startup_sweep_idle_s, sweep_partial_uploads

if TYPE_CHECKING:
    from videoseek.core.data_dir_lock import DataDirLock

log = logging.getLogger("videoseek.service")

STATIC_DIR = Path(__file__).with_name("static")


def _library_errors() -> dict[type[Exception], tuple[int, str]]:
    """Exceptions raised below the API and the status they mean at its edge."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import RedisError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    from videoseek.core.adapter import AdapterBaseMismatch, AdapterFileError, AdapterNotFound
    from videoseek.worker.jobs import JobNotFound
    from videoseek.worker.retrain import RetrainError

    errors: dict[type[Exception], tuple[int, str]] = {
        AdapterFileError: (422, "invalid_adapter"),
        AdapterBaseMismatch: (422, "adapter_model_mismatch"),
        AdapterNotFound: (503, "adapter_unavailable"),
        CollectionNotFound: (404, "collection_not_found"),
        CollectionExists: (409, "collection_exists"),
        CollectionUnreadable: (503, "collection_unavailable"),
        InvalidMetadata: (422, "invalid_metadata"),  # a library caller's metadata (uploads say more)
        InvalidName: (422, "invalid_name"),
        InvalidPoint: (422, "invalid_vector"),
        JobNotFound: (404, "job_not_found"),
        RetrainError: (422, "invalid_training_data"),
        StoreUnavailable: (503, "store_unavailable"),
        RedisConnectionError: (503, "redis_unavailable"),
        RedisTimeoutError: (503, "redis_unavailable"),
        RedisError: (503, "redis_unavailable"),  # any other refusal (read-only replica, out of memory)
    }
    try:
        from kombu.exceptions import OperationalError

        errors[OperationalError] = (503, "broker_unavailable")
    except ImportError:  # kombu comes with celery; embedded installs may lack neither, but be safe
        pass
    return errors


def access_note(settings: Settings, keys: KeyRing) -> str:
    """The one line logged at start about who may call this API."""
    if not keys.is_open:
        return "API keys required (Authorization: Bearer <key>)"
    if keys.open_policy == "loopback":
        return "no API keys configured: the API is open to requests from this machine only"
    return "WARNING: no API keys configured and not in embedded mode: the API is open to everyone"


def _connect(services: AppServices) -> None:
    """Open the shared store and build the search engine on it (called again later while it fails)."""
    from videoseek.core.collections import shared_store

    try:
        services.store = shared_store(services.settings)
    except StoreUnavailable as exc:
        services.store_error = str(exc)
        log.error("vector store unavailable: %s", exc)
        return
    services.store_error = None
    services.engine = _build_engine(services)


def _build_services(settings: Settings, keys: KeyRing, metrics: ServiceMetrics) -> AppServices:
    from videoseek.worker.jobs import get_job_store

    layout = DataLayout(settings.data_dir)
    layout.root.mkdir(parents=True, exist_ok=True)
    removed = sweep_partial_uploads(layout.uploads_dir, startup_sweep_idle_s(settings.embedded))
    if removed:
        log.info("removed %d partial upload(s) left by a process that died mid-upload", removed)
    secret = load_or_create_secret(layout.root / "secrets" / "server.key")
    services = AppServices(
        settings=settings,
        layout=layout,
        keys=keys,
        signer=MediaSigner(secret),
        cursors=CursorCodec(secret),
        metrics=metrics,
        model=QueryModel(settings),
        jobs=get_job_store(settings),
        tasks=collection_tasks_for(settings),
        redis_lane=RedisLane(wait_s=settings.worker.redis_timeout_s),
        connect=_connect,
    )
    _connect(services)
    return services


def _build_engine(services: AppServices) -> SearchEngine:
    assert services.store is not None
    metrics = services.metrics
    embedder = QueryEmbedder(
        services.model.encode,
        cache_size=services.settings.search.query_cache_size,
        on_batch=metrics.text_batch_size.observe,
        workers=services.settings.search.encoder_workers,
    )
    metrics.track_queue("query_encoder", lambda: embedder.queue_depth)
    return SearchEngine(
        services.store,
        embedder,
        scoring.score_candidates,
        oversample=services.settings.search.oversample,
        tau=services.settings.search.pooling_tau,
        model_fingerprint=services.model.loaded_fingerprint,
        metrics=metrics,
        frames=FrameVectorCache(services.settings.search.frame_cache_mb * 1024**2),
    )


def _close_store(settings: Settings) -> None:
    """Close this app's store: Edge lets only one process hold a data dir, so release it at shutdown."""
    from videoseek.core.collections import close_shared_store

    close_shared_store(settings)


def _start_runner(services: AppServices) -> None:
    """Start the in-process ingest worker; if the store is not available yet, the first upload starts it."""
    from videoseek.worker.runner import get_embedded_runner

    try:
        runner = get_embedded_runner(services.settings)
    except StoreUnavailable as exc:
        log.error("ingest worker not started yet (%s); it starts with the first upload", exc)
        return
    services.metrics.track_queue("ingest", lambda: float(runner.pending()) if runner.running else 0.0)


def _track_celery_queues(services: AppServices) -> None:
    """Report the depth of every Celery queue; NaN (unknown, not empty) while Redis cannot be read."""
    import redis

    from videoseek.worker.celery_app import QUEUES, queue_depths

    depths = queue_depths(services.settings)

    def read_all() -> dict[str, float]:
        try:
            return {queue: float(depth) for queue, depth in depths.all().items()}
        except (redis.RedisError, OSError):
            return dict.fromkeys(QUEUES, math.nan)

    services.metrics.track_queues(read_all)


def _take_data_dir(app: FastAPI) -> DataDirLock | None:
    """Embedded: the data directory's lock, taken here unless the app was given one held by its caller.

    Raises ``DataDirInUse`` (the app does not start) when another process writes there."""
    settings: Settings = app.state.settings
    if not settings.embedded or app.state.data_dir_lock is not None:
        return None
    from videoseek.core.data_dir_lock import DataDirLock

    return DataDirLock.acquire(settings.data_dir, "videoseek API (embedded)")


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    own_lock = _take_data_dir(app)
    try:
        async with _serving(app, settings):
            yield
    finally:
        if own_lock is not None:
            own_lock.release()


@asynccontextmanager
async def _serving(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    services = _build_services(settings, app.state.keys, app.state.metrics)
    services.model.start_loading()
    if settings.embedded:
        _start_runner(services)
    else:
        _track_celery_queues(services)
    # An API open to everyone is worth a warning in every log setup; `videoseek serve` also prints this line.
    open_to_everyone = services.keys.is_open and services.keys.open_policy != "loopback"
    log.log(
        logging.WARNING if open_to_everyone else logging.INFO,
        "videoseek API starting (%s mode): %s",
        "embedded" if settings.embedded else "distributed",
        access_note(settings, services.keys),
    )
    app.state.services = services
    try:
        yield
    finally:
        app.state.services = None
        if services.engine is not None:
            services.engine.embedder.close()
        services.tasks.close()  # before the store closes under a running re-index
        services.redis_lane.close()
        if settings.embedded:
            from videoseek.worker.runner import stop_embedded_runner

            stop_embedded_runner()
        _close_store(settings)


def create_app(settings: Settings | None = None, *, data_dir_lock: DataDirLock | None = None) -> FastAPI:
    """The videoseek API and web page. Nothing is opened until the app starts (its lifespan).

    ``data_dir_lock``: the embedded data directory's lock, held by the caller for longer than the app runs;
    without it an embedded app takes the lock itself while it runs."""
    settings = (settings or get_settings()).for_api()  # short Redis timeouts: a hung Redis costs a quick 503
    app = FastAPI(
        title="videoseek",
        version=videoseek.__version__,
        summary="Self-hosted text-to-video search.",
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.state.data_dir_lock = data_dir_lock
    app.state.keys = KeyRing(settings.api_keys, open_policy="loopback" if settings.embedded else "anyone")
    app.state.metrics = ServiceMetrics()
    app.state.services = None
    install_error_handlers(app, _library_errors())
    app.add_middleware(RequestMetricsMiddleware, metrics=app.state.metrics)
    for module in (search, collections, tasks, videos, jobs, media, health):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    return app


def bind_is_safe(settings: Settings, host: str) -> bool:
    """An open (key-less) embedded API may only listen on a loopback address."""
    return bool(settings.api_keys) or not settings.embedded or is_loopback(host)
