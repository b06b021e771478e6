"""Build the clip store the settings ask for."""

from __future__ import annotations

from videoseek.settings import Settings
from videoseek.store.base import ClipStore

# One wording for every command that refuses distributed mode without a Qdrant server (`serve`, `worker`).
EMBEDDED_STORE_IN_DISTRIBUTED_MODE = (
    "VIDEOSEEK_REDIS_URL is set (distributed mode) but VIDEOSEEK_QDRANT__URL is not: Celery workers "
    "cannot share the embedded store. Set a Qdrant URL, or unset the Redis URL for embedded mode"
)


def distributed_store_problem(settings: Settings) -> str | None:
    """Why these settings cannot store vectors for many processes, or None when they can.

    An Edge store directory admits one process at a time, so distributed mode (Redis set: an API and any
    number of Celery workers) needs a Qdrant server; without one each worker would lock, or fork, the store.
    """
    if not settings.embedded and not settings.qdrant.url:
        return EMBEDDED_STORE_IN_DISTRIBUTED_MODE
    return None


def open_store(settings: Settings) -> ClipStore:
    """A Qdrant server store when ``qdrant.url`` is set, else the embedded Qdrant Edge store.

    Call once per process (after fork) and share the store between threads; ``close()`` it at shutdown.
    Only one process may open an Edge store directory at a time.
    """
    if settings.qdrant.url:
        from videoseek.store.server import ServerClipStore  # qdrant-client only when used

        api_key = settings.qdrant.api_key.get_secret_value() if settings.qdrant.api_key else None
        return ServerClipStore.connect(settings.qdrant.url, api_key=api_key)
    from videoseek.store.edge import EdgeClipStore  # Edge bindings only when used

    return EdgeClipStore(settings.qdrant_path)
