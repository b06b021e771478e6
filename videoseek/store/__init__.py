"""The clip store: one narrow interface over Qdrant Edge (embedded) and a Qdrant server.

Import implementations from their modules (``store.edge``, ``store.server``) or build one with
:func:`open_store`; this package only re-exports the interface.
"""

from videoseek.store.base import (
    METADATA_KEY,
    ClipPoint,
    ClipSpan,
    ClipStore,
    CollectionExists,
    CollectionInfo,
    CollectionNotFound,
    CollectionUnreadable,
    InvalidPoint,
    ScoredClip,
    SearchFilter,
    StoreError,
    StoreUnavailable,
    VersionInfo,
    point_id,
)
from videoseek.store.factory import open_store

__all__ = [
    "METADATA_KEY",
    "ClipPoint",
    "ClipSpan",
    "ClipStore",
    "CollectionExists",
    "CollectionInfo",
    "CollectionNotFound",
    "CollectionUnreadable",
    "InvalidPoint",
    "ScoredClip",
    "SearchFilter",
    "StoreError",
    "StoreUnavailable",
    "VersionInfo",
    "open_store",
    "point_id",
]
