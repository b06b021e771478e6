"""Collections as a whole: the vectors in the store plus every file the data directory keeps for them.

A collection is created for one base model (its fingerprint and embedding size are recorded in the store) and
optionally one adapter version; ingest embeds with exactly that pair. Deleting a collection (or one video)
removes its points, stored videos, cached frames, thumbnails, job records and training pairs, so re-uploading
the same file afterwards indexes it again.

Functions take the process's :class:`~videoseek.context.PipelineContext` (or just its store) rather than
opening anything: Qdrant Edge lets only one process open a store directory, and a server client is meant to
be reused, so each process opens its store once.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from videoseek.layout import DataLayout, check_collection_name, check_video_id
from videoseek.settings import Settings
from videoseek.store import ClipStore, CollectionInfo, CollectionNotFound
from videoseek.store.base import check_store_name

if TYPE_CHECKING:
    from videoseek.context import PipelineContext


def install_adapter(settings: Settings, adapter_dir: Path) -> str:
    """Verify an adapter directory against the configured base model and copy it into the data dir.

    Returns the adapter version (the content hash): the files end up in ``DataLayout.adapter_dir(version)``.
    Raises ``AdapterFileError`` (unreadable, corrupt) or ``AdapterBaseMismatch`` (other base model).
    """
    from videoseek.adapter import load_adapter, store_adapter
    from videoseek.clip import get_clip

    clip = get_clip(settings.model, settings.device)
    adapter = load_adapter(Path(adapter_dir), expected_base=clip.identity)
    return store_adapter(adapter, DataLayout(settings.data_dir).adapters_dir)


def create_collection(
    ctx: PipelineContext, name: str, adapter_dir: Path | None = None, *, adapter_version: str | None = None
) -> CollectionInfo:
    """Create an empty collection for the configured base model, with an optional adapter.

    Give the adapter as a directory (``adapter_dir``: verified and copied in) or as the version of one already
    in the data dir (``adapter_version``). Loads the base model (cached per process) to read its embedding
    size and fingerprint. Raises ``CollectionExists``, ``InvalidName``, adapter file errors.
    """
    from videoseek.clip import get_clip

    check_store_name(name)
    if adapter_dir is not None and adapter_version is not None:
        raise ValueError("give adapter_dir or adapter_version, not both")
    settings = ctx.settings
    clip = get_clip(settings.model, settings.device)
    if adapter_dir is not None:
        adapter_version = install_adapter(settings, adapter_dir)
    elif adapter_version is not None:
        from videoseek.adapter import load_adapter

        load_adapter(ctx.layout.adapter_dir(adapter_version), expected_base=clip.identity)
    return ctx.store.create_collection(name, clip.embed_dim, clip.identity.fingerprint, adapter_version)


def get_collection(store: ClipStore, name: str) -> CollectionInfo | None:
    """The collection's info, or None if there is none by that name."""
    try:
        return store.get_collection(name)
    except CollectionNotFound:
        return None


def require_collection(store: ClipStore, name: str) -> CollectionInfo:
    """The collection's info; ``CollectionNotFound`` with the fix when it does not exist."""
    info = get_collection(store, name)
    if info is None:
        raise CollectionNotFound(
            f"collection {name!r} does not exist; create it first (POST /collections, or "
            f"`videoseek ingest --collection {name}` creates it)"
        )
    return info


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def delete_collection(ctx: PipelineContext, name: str) -> None:
    """Delete the collection's points and every file, job and training pair it has. ``CollectionNotFound`` if
    unknown.

    Files are removed even when the store no longer knows the collection (a half-finished earlier delete).
    """
    check_collection_name(name)
    layout = ctx.layout
    missing: CollectionNotFound | None = None
    try:
        ctx.store.delete_collection(name)
    except CollectionNotFound as exc:
        missing = exc
    for directory in (
        layout.videos_dir(name),
        layout.frames_dir(name),
        layout.collection_thumbnails_dir(name),
        layout.playback_dir(name),
    ):
        _remove_tree(directory)
    with contextlib.suppress(OSError):
        layout.example_queries(name).unlink(missing_ok=True)
    ctx.jobs.delete_collection(name)
    ctx.pairs.delete_collection(name)
    if missing is not None:
        raise missing


def remove_video_files(layout: DataLayout, collection: str, video_id: str) -> None:
    """Delete a video's stored copy, cached frames and thumbnails (whatever of them exists)."""
    from videoseek.video import FrameCache

    check_video_id(video_id)
    videos = layout.videos_dir(collection)
    if videos.is_dir():
        for stored in videos.glob(f"{video_id}.*"):
            with contextlib.suppress(OSError):
                stored.unlink()
    with contextlib.suppress(OSError):
        layout.playback_file(collection, video_id).unlink(missing_ok=True)
    FrameCache(layout.frames_dir(collection)).delete(video_id)
    _remove_tree(layout.thumbnails_dir(collection, video_id))


def delete_video(ctx: PipelineContext, collection: str, video_id: str) -> int:
    """Remove one video from a collection: points, files, training pairs and its dedup claim; returns the
    points removed.

    After this, submitting the same file again indexes it again.
    """
    with ctx.locks.hold(collection):  # not between a re-index's last copy and its switch
        removed = ctx.store.delete_video(collection, video_id)
    remove_video_files(ctx.layout, collection, video_id)
    ctx.pairs.delete_video(collection, video_id)
    jobs = ctx.jobs
    owner = jobs.video_owner(collection, video_id)
    if owner is not None:
        jobs.release_video(collection, video_id, owner)
    return removed
