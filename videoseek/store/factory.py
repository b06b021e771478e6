"""Build the clip store the settings ask for."""

from __future__ import annotations

from videoseek.settings import Settings
from videoseek.store.base import ClipStore


def open_store(settings: Settings) -> ClipStore:
    """A Qdrant server store when ``qdrant.url`` is set, else the embedded Qdrant Edge store.

    Call once per process (after fork) and share the store between threads; ``close()`` it at shutdown.
    Only one process may open an Edge store directory at a time.
    """
    if settings.qdrant.url:
        from videoseek.store.server import ServerClipStore  # qdrant-client only when used

        api_key = settings.qdrant.api_key.get_secret_value() if settings.qdrant.api_key else None
        layout = settings.qdrant.collection_layout()
        return ServerClipStore.connect(settings.qdrant.url, api_key=api_key, layout=layout)
    from videoseek.store.edge import EdgeClipStore  # Edge bindings only when used

    return EdgeClipStore(settings.qdrant_path)
