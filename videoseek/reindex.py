"""Re-indexing a collection when its adapter changes: every clip embedded again from the frame cache.

A collection's vectors are only comparable with queries encoded by the same adapter, so a new adapter (or
none) means new vectors for every clip. They are written into a NEW physical version of the collection while
searches keep using the old one, and the alias is switched once the new version is complete:

    install adapter -> new_version -> embed cached frames, upsert into it -> catch up -> switch (activate)

Nothing is decoded again: a video's frames come from its :class:`~videoseek.video.FrameCache`, its clip
plan from ``clips.json``, its payload (source, metadata) from the clips already indexed, and the vectors from
the ingest pipeline's own embedder and point builder, so a re-indexed clip is exactly what ingesting it
under the new adapter would have stored.

Ingest and video deletion go on during a re-index and write to the live (old) version. Whatever changed
there is carried over at the end under the collection's write lock (``videoseek/collection_lock.py``), which
ingest's indexing step and video deletion also take: videos indexed meanwhile are embedded into the new
version, videos deleted meanwhile are dropped from it, then the alias switches. After the switch, an ingest
that embedded with the old adapter sees the new version under that lock and embeds its video again. The
lock is held only for that final step; the bulk of the work runs without it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from videoseek.cancel import CancelCheck, not_cancellable
from videoseek.collections import install_adapter, require_collection
from videoseek.context import PipelineContext
from videoseek.embedding import EmbedRequest
from videoseek.ingest.pipeline import clip_points, read_clip_plan
from videoseek.store import METADATA_KEY, ClipStore, CollectionInfo, SearchFilter, StoreError
from videoseek.versions import rollback_target
from videoseek.video import ClipPlan, FrameCacheMiss

log = logging.getLogger(__name__)

# Videos embedded together (their frames share batches) before their clips are upserted.
GROUP_MAX_VIDEOS = 16
UNLOCKED_CATCH_UP_PASSES = 3  # keep the locked catch-up small when ingest is busy


class ReindexError(RuntimeError):
    """The re-index could not be completed; the collection keeps serving its old version."""


@dataclass(frozen=True)
class ReindexProgress:
    """Where a re-index is: ``stage`` is embedding, catching-up, activating or done."""

    stage: str
    videos_done: int
    videos_total: int
    clips: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


ProgressCallback = Callable[[ReindexProgress], None]


@dataclass(frozen=True)
class ReindexResult:
    """What a re-index did. ``missing``: videos left out for lack of cached frames (``allow_missing``)."""

    collection: str
    old_adapter_version: str | None
    new_adapter_version: str | None
    physical: str
    videos: int
    clips: int
    missing: list[str] = field(default_factory=list)
    caught_up: int = 0  # videos indexed during the re-index, carried into the new version
    removed: int = 0  # videos deleted during the re-index, dropped from the new version
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Cached:
    """What re-embedding one video needs, all read from disk and the live version (no decoding)."""

    video_id: str
    clips: list[ClipPlan]
    timestamps: np.ndarray
    frames: np.ndarray
    source: str
    metadata: dict[str, Any]


def reindex_collection(
    ctx: PipelineContext,
    name: str,
    adapter_dir: Path | None,
    *,
    allow_missing: bool = False,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck = not_cancellable,
) -> ReindexResult:
    """Re-embed every clip of ``name`` with the adapter in ``adapter_dir`` (None: no adapter) and switch.

    The adapter is verified against the configured base model and copied into the data dir first. Raises
    :class:`ReindexError` (e.g. videos without cached frames, unless ``allow_missing``),
    ``CollectionNotFound``, ``AdapterFileError`` / ``AdapterBaseMismatch``; on any error the collection
    keeps its old version.
    """
    version = install_adapter(ctx.settings, Path(adapter_dir)) if adapter_dir is not None else None
    return reindex_to_version(
        ctx, name, version, allow_missing=allow_missing, progress=progress, cancel=cancel
    )


def reindex_to_version(
    ctx: PipelineContext,
    name: str,
    adapter_version: str | None,
    *,
    allow_missing: bool = False,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck = not_cancellable,
) -> ReindexResult:
    """:func:`reindex_collection` with an adapter already installed in the data dir (the Celery task's way).

    Embeds with the process's image tower (``ctx.embedder``: its loaded model and adapters are shared).
    ``progress`` is called from this thread; it must not take the collection's write lock. ``cancel`` is
    checked before each group of videos and just before the switch: a cancelled re-index drops its new
    version (``TaskCancelled``), and the collection keeps serving the old one.
    """
    return _Reindex(ctx, name, allow_missing, progress, cancel).run(adapter_version)


def rollback_to_version(
    ctx: PipelineContext,
    name: str,
    physical: str,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck = not_cancellable,
) -> ReindexResult:
    """Put back ``physical``, an earlier version of ``name`` kept after a switch (see ``videoseek/versions.py``).

    Its vectors are used as they are (the same results as when it served, to the clip); only what changed since
    is carried over, as at the end of a re-index: videos indexed since are embedded from their cached frames with
    the version's adapter, videos deleted since are dropped. Nothing is decoded. The version that served until
    now is kept in turn, so a rollback can itself be undone.
    """
    return _Reindex(ctx, name, False, progress, cancel).back_to(physical)


class _Reindex:
    """One re-index run: the new version being filled and what has been copied into it."""

    def __init__(
        self,
        ctx: PipelineContext,
        name: str,
        allow_missing: bool,
        progress: ProgressCallback | None,
        cancel: CancelCheck,
    ) -> None:
        self.ctx = ctx
        self.name = name
        self.embedder = ctx.embedder
        self.allow_missing = allow_missing
        self.progress = progress
        self.cancel = cancel
        self.layout = ctx.layout
        self.cache = ctx.frame_cache(name)
        self.store: ClipStore = ctx.store
        self.clips: dict[str, int] = {}  # video id -> clips written into the new version
        self.missing: list[str] = []
        self.total = 0
        self.dim = 0

    def run(self, adapter_version: str | None) -> ReindexResult:
        started = time.monotonic()
        old = require_collection(self.store, self.name)
        self.dim = old.dim
        self._check_model_and_adapter(old, adapter_version)
        videos = self.store.list_videos(self.name)
        self.missing = [v for v in videos if not self._has_cached_frames(v)]
        self._refuse_missing(self.missing, len(videos))
        self.total = len(videos) - len(self.missing)
        physical = self.store.new_version(self.name, adapter_version)
        target = replace(old, physical=physical, adapter_version=adapter_version)
        log.info(
            "re-indexing %r: %d videos into %s (adapter %s)", self.name, self.total, physical, adapter_version
        )
        try:
            self._copy(target, [v for v in videos if v not in self.missing], "embedding")
            for _ in range(UNLOCKED_CATCH_UP_PASSES):
                if not self._copy(target, self._new_videos(), "catching-up"):
                    break
            removed = self._switch(old, target)
        except BaseException:
            self._drop_unfinished(physical)
            raise
        return self._finish(old, target, set(videos), removed, started)

    def back_to(self, physical: str) -> ReindexResult:
        """Switch back to the kept version ``physical``, carrying over what changed since it served."""
        started = time.monotonic()
        old = require_collection(self.store, self.name)
        self.dim = old.dim
        kept = rollback_target(self.store, self.name, physical)  # NoVersionToRestore: nothing was changed
        if kept.model != old.model:
            raise ReindexError(f"{physical!r} was made for another base model ({kept.model})")
        target = replace(old, physical=physical, adapter_version=kept.adapter_version)
        self._check_model_and_adapter(old, target.adapter_version)
        initial = self.store.list_videos(self.name, physical=physical)
        self.clips = dict.fromkeys(initial, 0)
        self.total = len(initial)
        log.info("rolling %r back to %s (adapter %s)", self.name, physical, target.adapter_version)
        # A failure leaves the kept version kept (never dropped): at worst it holds a few videos more.
        for _ in range(UNLOCKED_CATCH_UP_PASSES):
            if not self._copy(target, self._new_videos(), "catching-up"):
                break
        removed = self._switch(old, target)
        return self._finish(old, target, set(initial), removed, started)

    def _finish(
        self,
        old: CollectionInfo,
        target: CollectionInfo,
        initial: set[str],
        removed: list[str],
        started: float,
    ) -> ReindexResult:
        for video_id in removed:
            self.clips.pop(video_id, None)
        self._report("done")
        return ReindexResult(
            collection=self.name,
            old_adapter_version=old.adapter_version,
            new_adapter_version=target.adapter_version,
            physical=target.physical,
            videos=len(self.clips),
            clips=self.store.count(self.name),
            missing=sorted(self.missing),
            caught_up=sum(v not in initial for v in self.clips),
            removed=len(removed),
            seconds=round(time.monotonic() - started, 3),
        )

    # -- checks -------------------------------------------------------------------------------------

    def _check_model_and_adapter(self, old: CollectionInfo, adapter_version: str | None) -> None:
        identity = self.embedder.clip.identity
        if old.model != identity.fingerprint:
            raise ReindexError(
                f"collection {self.name!r} was created for base model {old.model}, but this process runs "
                f"{identity.describe()}; set VIDEOSEEK_MODEL to the collection's model"
            )
        if adapter_version is not None:
            from videoseek.adapter import load_adapter

            load_adapter(self.layout.adapter_dir(adapter_version), expected_base=identity)

    def _has_cached_frames(self, video_id: str) -> bool:
        return self.cache.has(video_id) and read_clip_plan(self.layout, self.name, video_id) is not None

    def _refuse_missing(self, missing: list[str], total: int) -> None:
        if not missing or self.allow_missing:
            if missing:
                log.warning("re-indexing %r without %d videos (no cached frames)", self.name, len(missing))
            return
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise ReindexError(
            f"{len(missing)} of {total} videos of {self.name!r} have no cached frames or clip plan ({shown}); "
            "the re-index never decodes video again: delete and re-ingest them, or pass --allow-missing "
            "(allow_missing=True) to leave them out of the re-indexed collection"
        )

    # -- copying ------------------------------------------------------------------------------------

    def _new_videos(self) -> list[str]:
        """Videos in the live version not copied yet (indexed since the re-index started)."""
        known = set(self.clips) | set(self.missing)
        return [v for v in self.store.list_videos(self.name) if v not in known]

    def _copy(self, target: CollectionInfo, video_ids: list[str], stage: str) -> int:
        """Embed these videos' cached frames with the new adapter into the new version; returns how many."""
        if video_ids:
            self.total = max(self.total, len(self.clips) + len(video_ids))
        copied = 0
        for group in self._groups(video_ids):
            self.cancel()
            requests = [EmbedRequest(c.frames, target.adapter_version) for c in group]
            for cached, vectors in zip(group, self.embedder.embed(requests), strict=True):
                points = clip_points(
                    self.name,
                    cached.video_id,
                    cached.clips,
                    cached.timestamps,
                    vectors,
                    source=cached.source,
                    metadata=cached.metadata,
                    adapter_version=target.adapter_version,
                )
                self.store.upsert(self.name, points, physical=target.physical)
                self.clips[cached.video_id] = len(points)
            copied += len(group)
            self._report(stage)
        return copied

    def _groups(self, video_ids: Iterable[str]) -> Iterator[list[_Cached]]:
        """Loaded videos in groups of about ``GROUP_MAX_VIDEOS`` videos or a few embedding batches."""
        budget = 4 * self.embedder.batch_size
        group: list[_Cached] = []
        for video_id in video_ids:
            cached = self._load(video_id)
            if cached is None:
                continue
            group.append(cached)
            if len(group) >= GROUP_MAX_VIDEOS or sum(len(c.frames) for c in group) >= budget:
                yield group
                group = []
        if group:
            yield group

    def _load(self, video_id: str) -> _Cached | None:
        """A video's cached frames, clip plan and payload; None if it was deleted from the collection."""
        payload = self._indexed_payload(video_id)
        if payload is None:
            return None  # deleted meanwhile: nothing to carry over
        clips = read_clip_plan(self.layout, self.name, video_id)
        try:
            timestamps, frames = self.cache.get(video_id)
        except FrameCacheMiss:
            clips = None
        if clips is None or any(i >= len(frames) for c in clips for i in c.frame_indices):
            # Lost since the start (or a plan that does not fit its frames): same rule as at the start.
            self.missing.append(video_id)
            self._refuse_missing([video_id], len(self.clips) + 1)
            return None
        metadata = payload.get(METADATA_KEY) or {}
        return _Cached(video_id, clips, timestamps, frames, str(payload.get("source", "")), dict(metadata))

    def _indexed_payload(self, video_id: str) -> dict[str, Any] | None:
        """The payload the live version holds for the video (source and metadata are the same on every clip)."""
        hits = self.store.search(
            self.name, np.ones(self.dim, np.float32), 1, SearchFilter(video_ids=[video_id])
        )
        return hits[0].payload if hits else None

    # -- switching ----------------------------------------------------------------------------------

    def _switch(self, old: CollectionInfo, target: CollectionInfo) -> list[str]:
        """Under the write lock: copy the last changes, switch to the new version; returns videos dropped."""
        with self.ctx.locks.hold(self.name):
            live = self.store.get_collection(self.name)
            if live.physical != old.physical:
                raise ReindexError(
                    f"collection {self.name!r} was switched to another version ({live.physical}) while this "
                    "re-index ran (another re-index?); run it again"
                )
            self._copy(target, self._new_videos(), "catching-up")
            live_videos = set(self.store.list_videos(self.name))
            removed = sorted(v for v in self.clips if v not in live_videos)
            self.missing = [v for v in self.missing if v in live_videos]  # deleted meanwhile: not missing
            self.cancel()  # the last point where stopping leaves the old version serving
            self._report("activating")
            self.store.activate_version(
                self.name, target.physical, keep=self.ctx.settings.adapters.versions_kept
            )
            # The store has no delete on a pending version: drop them right after the switch, still locked.
            for video_id in removed:
                self.store.delete_video(self.name, video_id)
        log.info("re-indexed %r: now %s (adapter %s)", self.name, target.physical, target.adapter_version)
        return removed

    def _drop_unfinished(self, physical: str) -> None:
        """A failed re-index leaves nothing behind: its half-built version would hold disk until deletion."""
        try:
            self.store.drop_version(self.name, physical)
        except StoreError as exc:  # live already (failed after the switch), or the store is down: keep it
            log.warning("re-index of %r: could not drop version %s: %s", self.name, physical, exc)

    def _report(self, stage: str) -> None:
        if self.progress is not None:
            clips = sum(self.clips.values())
            self.progress(ReindexProgress(stage, len(self.clips), max(self.total, len(self.clips)), clips))
