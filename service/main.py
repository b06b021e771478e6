"""The FastAPI application: :func:`create_app` builds it; its lifespan opens what it needs, once.

The app is given its runtime (where uploads and admin tasks run: ``videoseek/cli/runtime.py`` chooses it,
from ``settings.for_api()``: short Redis timeouts) and starts it with itself. On start: the runtime (in
embedded mode the data directory's writer lock, unless its caller holds it already as ``videoseek serve``
does, and the in-process ingest threads), the server secret, the vector store, the query model (loaded in the
background, ``/readyz`` says when).
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

import videoseek
from service.auth import KeyRing, MediaSigner, OpenPolicy, is_loopback
from service.batching import QueryEmbedder
from service.errors import install_error_handlers
from service.frame_vector_cache import FrameVectorCache
from service.metrics import RequestMetricsMiddleware, ServiceMetrics
from service.model import QueryModel
from service.pagination import CursorCodec
from service.rankings import VersionRankings
from service.redis_lane import RedisLane
from service.routers import (
    collections,
    health,
    ingest,
    jobs,
    media,
    pairs,
    search,
    tasks,
    versions,
    videos,
)
from service.search_engine import SearchEngine
from service.secret import load_or_create_secret
from service.state import AppServices
from service.uploads import startup_sweep_idle_s, sweep_partial_uploads
from videoseek.layout import DataLayout, InvalidName
from videoseek.metadata import InvalidMetadata
from videoseek.runtime.base import RunMode, Runtime, TaskConflict
from videoseek.settings import Settings
from videoseek.store import (
    CollectionExists,
    CollectionNotFound,
    CollectionUnreadable,
    InvalidPoint,
    StoreUnavailable,
)

log = logging.getLogger("service")

STATIC_DIR = Path(__file__).with_name("static")


def _library_errors() -> dict[type[Exception], tuple[int, str]]:
    """Exceptions raised below the API and the status they mean at its edge."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import RedisError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    from videoseek.adapter import AdapterBaseMismatch, AdapterFileError, AdapterNotFound
    from videoseek.jobs import JobNotFound
    from videoseek.pair_intake import UnknownClip, UnknownVideos
    from videoseek.pairs import InvalidPair
    from videoseek.retraining import RetrainError
    from videoseek.versions import NoVersionToRestore

    errors: dict[type[Exception], tuple[int, str]] = {
        AdapterFileError: (422, "invalid_adapter"),
        AdapterBaseMismatch: (422, "adapter_model_mismatch"),
        AdapterNotFound: (503, "adapter_unavailable"),
        CollectionNotFound: (404, "collection_not_found"),
        CollectionExists: (409, "collection_exists"),
        CollectionUnreadable: (503, "collection_unavailable"),
        InvalidMetadata: (422, "invalid_metadata"),  # a library caller's metadata (uploads say more)
        InvalidName: (422, "invalid_name"),
        InvalidPair: (422, "invalid_pair"),
        InvalidPoint: (422, "invalid_vector"),
        JobNotFound: (404, "job_not_found"),
        NoVersionToRestore: (409, "no_version_to_restore"),
        RetrainError: (422, "invalid_training_data"),
        StoreUnavailable: (503, "store_unavailable"),
        TaskConflict: (409, "conflict"),
        UnknownClip: (422, "unknown_clip"),
        UnknownVideos: (422, "unknown_video"),
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
    """Open the runtime's store and build the search engine on it (called again later while it fails)."""
    try:
        services.store = services.context.store
    except StoreUnavailable as exc:
        services.store_error = str(exc)
        log.error("vector store unavailable: %s", exc)
        return
    services.store_error = None
    services.engine = _build_engine(services)


def _build_services(runtime: Runtime, keys: KeyRing, metrics: ServiceMetrics) -> AppServices:
    settings = runtime.context.settings
    layout = DataLayout(settings.data_dir)
    layout.root.mkdir(parents=True, exist_ok=True)
    # After the runtime started: in embedded mode it holds the data directory, so a partial upload is a dead one.
    removed = sweep_partial_uploads(layout.uploads_dir, startup_sweep_idle_s(runtime.owns_data_dir))
    if removed:
        log.info("removed %d partial upload(s) left by a process that died mid-upload", removed)
    secret = load_or_create_secret(layout.server_secret)
    services = AppServices(
        settings=settings,
        layout=layout,
        keys=keys,
        signer=MediaSigner(secret),
        cursors=CursorCodec(secret),
        metrics=metrics,
        model=QueryModel(settings),
        runtime=runtime,
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
    settings = services.settings
    return SearchEngine(
        services.store,
        embedder,
        VersionRankings(services.layout, settings.search, use_chosen=settings.adapters.choose_pooling),
        tau=settings.search.pooling_tau,
        model_fingerprint=services.model.loaded_fingerprint,
        metrics=metrics,
        frames=FrameVectorCache(settings.search.frame_cache_mb * 1024**2),
    )


def _track_queues(services: AppServices) -> None:
    """Report the depth of every queue of the runtime; NaN (unknown, not empty) while it cannot be read."""
    import redis

    def read_all() -> dict[str, float]:
        try:
            return services.runtime.queue_depths()
        except (redis.RedisError, OSError):
            return dict.fromkeys(services.runtime.queues, math.nan)

    services.metrics.track_queues(read_all)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    runtime: Runtime = app.state.runtime
    runtime.start()  # embedded: the data directory (DataDirInUse: the app does not start), the ingest threads
    services = _build_services(runtime, app.state.keys, app.state.metrics)
    services.model.start_loading()
    _track_queues(services)
    # An API open to everyone is worth a warning in every log setup; `videoseek serve` also prints this line.
    open_to_everyone = services.keys.is_open and services.keys.open_policy != "loopback"
    log.log(
        logging.WARNING if open_to_everyone else logging.INFO,
        "videoseek API starting (%s mode): %s",
        runtime.mode,
        access_note(settings, services.keys),
    )
    app.state.services = services
    try:
        yield
    finally:
        app.state.services = None
        if services.engine is not None:
            services.engine.embedder.close()
        services.redis_lane.close()
        runtime.close()  # its tasks first, at a safe point; then its threads and stores


def create_app(runtime: Runtime) -> FastAPI:
    """The videoseek API and web page on ``runtime`` (built from ``settings.for_api()``: short Redis
    timeouts). Nothing is opened until the app starts (its lifespan), which starts the runtime and closes it
    at shutdown."""
    settings = runtime.context.settings
    app = FastAPI(
        title="videoseek",
        version=videoseek.__version__,
        summary="Self-hosted text-to-video search.",
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.state.runtime = runtime
    app.state.keys = KeyRing(settings.api_keys, open_policy=open_policy(runtime.mode))
    app.state.metrics = ServiceMetrics()
    app.state.services = None
    install_error_handlers(app, _library_errors())
    app.add_middleware(RequestMetricsMiddleware, metrics=app.state.metrics)
    for module in (search, ingest, collections, tasks, versions, videos, pairs, jobs, media, health):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    return app


def open_policy(mode: RunMode) -> OpenPolicy:
    """Who may call an API that has no keys configured: this machine only, unless it is one of many replicas
    of a distributed deployment (behind its own gateway)."""
    return "loopback" if mode == "embedded" else "anyone"


def bind_is_safe(settings: Settings, mode: RunMode, host: str) -> bool:
    """An open (key-less) API that admits this machine only may only listen on a loopback address."""
    return bool(settings.api_keys) or open_policy(mode) != "loopback" or is_loopback(host)
