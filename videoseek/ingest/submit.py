"""Submitting a file for ingest: store it under the collection, dedup by content, create a job, queue it.

The one entry point both the API (uploads, ``move=True``) and the CLI (local files, copied) use, through
their runtime's ``submit_ingest``: the runtime passes the ``enqueue`` that hands a job to whoever runs jobs
there (the in-process runner or a Celery worker); this module does not know which.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from videoseek.jobs import Job, JobStage, JobStore, new_job_id
from videoseek.layout import check_collection_name, stored_suffix
from videoseek.metadata import check_metadata
from videoseek.pairs import InvalidPair, PairDraft
from videoseek.video.identity import video_id_for_file

if TYPE_CHECKING:
    from videoseek.context import PipelineContext

Enqueue = Callable[[str], None]  # hands a stored job's id to whoever runs jobs


class IngestQueueFull(RuntimeError):
    """The ingest queue is full: retry later (the API answers 429 with Retry-After)."""

    retry_after_s = 5


@dataclass(frozen=True)
class SubmitResult:
    """What a submission did. ``duplicate``: the file was already in the collection; nothing was queued."""

    job_id: str
    video_id: str
    duplicate: bool


def _place_file(source: Path, target: Path, *, move: bool) -> None:
    """Put ``source`` at ``target`` atomically (a crash leaves either nothing or the whole file)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if move:
        try:
            source.replace(target)
            return
        except OSError:  # another filesystem: copy, then remove the original
            pass
    fd, tmp_name = tempfile.mkstemp(prefix=".incoming-", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        shutil.copyfile(source, tmp)
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if move:
        source.unlink(missing_ok=True)


def submit_file(
    ctx: PipelineContext,
    enqueue: Enqueue,
    collection: str,
    path: Path | str,
    source_name: str | None = None,
    metadata: dict[str, Any] | None = None,
    *,
    move: bool = False,
    pairs: Sequence[PairDraft] = (),
) -> SubmitResult:
    """Store ``path`` in the collection and ``enqueue`` its job; re-submitting the same bytes is a no-op.

    ``pairs``: captions (and sidecar subtitle cues) for this video, stored as its training pairs when the job
    is created, so they are listed at once; the end of its ingest fits them to the video's length (see
    ``ingest/video_pairs.py``), and a failed ingest removes them with the video. Sent with a file already in
    the collection, they are stored for it (fitted to its length now, when known).

    ``move=True`` moves the file (uploads) instead of copying it (the CLI's local files); a moved duplicate is
    deleted. The collection must exist (:func:`videoseek.collections.create_collection`). Raises
    ``FileNotFoundError``, ``CollectionNotFound``, :class:`~videoseek.metadata.InvalidMetadata` (metadata
    the stores could not keep, see that module), or :class:`IngestQueueFull` from ``enqueue`` (the file is
    left where it was). A file that is not a usable video is accepted and ends as a failed job with a reason.
    """
    settings = ctx.settings
    metadata = check_metadata(dict(metadata or {}))  # the last guard: library callers skip the edge's parse
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"no such file: {source}")
    from videoseek.collections import require_collection

    require_collection(ctx.store, check_collection_name(collection))
    jobs = ctx.jobs
    name = source_name or source.name
    video_id = video_id_for_file(source)
    job = Job(
        job_id=new_job_id(),
        collection=collection,
        video_id=video_id,
        source=name,
        video_file=video_id + stored_suffix(name),
        metadata=metadata,
    )
    size = source.stat().st_size
    if size > settings.ingest.max_file_bytes:
        limit = settings.ingest.max_file_bytes
        reason = f"file is {size} bytes, over the {limit} byte limit (VIDEOSEEK_INGEST__MAX_FILE_BYTES)"
        return _record_refusal(jobs, job, source, move, reason)
    # The job exists before it claims the video, so a claim always names a real job (a claim whose job is
    # missing or failed is stale and taken over), and a crash before the file is placed leaves a job whose
    # run fails ("file missing") and frees the claim.
    jobs.create(job)
    try:
        owner = _claim(ctx, job)
    except BaseException as exc:
        jobs.update(job.job_id, stage=JobStage.FAILED, reason=f"could not be queued: {exc}")
        raise
    if owner is not None:
        if move:
            source.unlink(missing_ok=True)
        try:
            problems = _store_pairs(ctx, job, pairs, known_length=True)
        except BaseException as exc:  # the pair store is down: a job that never finishes would be worse
            jobs.update(job.job_id, stage=JobStage.FAILED, reason=f"its captions could not be stored: {exc}")
            raise
        _mark_duplicate(jobs, job, owner, problems)
        return SubmitResult(job.job_id, video_id, duplicate=True)
    layout = ctx.layout
    try:
        _store_pairs(ctx, job, pairs, known_length=False)  # before the job can run and fit them
        _place_file(source, layout.videos_dir(collection) / job.video_file, move=move)
        enqueue(job.job_id)
    except BaseException as exc:
        _roll_back(ctx, job, source, move, exc)
        raise
    return SubmitResult(job.job_id, video_id, duplicate=False)


def _store_pairs(
    ctx: PipelineContext, job: Job, drafts: Sequence[PairDraft], *, known_length: bool
) -> list[str]:
    """Store the drafts as the video's pairs; what was left out, in words (a start past a known end)."""
    if not drafts:
        return []
    duration = None
    if known_length:
        from videoseek.ingest.pipeline import video_duration

        duration = video_duration(ctx.layout, job.collection, job.video_id)
    pairs, outside = [], 0
    for draft in drafts:
        try:
            pairs.append(draft.for_video(job.collection, job.video_id, duration))
        except InvalidPair:  # checked when it arrived: only the video's length can refuse it now
            outside += 1
    ctx.pairs.add(pairs)
    return [f"{outside} caption(s) or cue(s) start after the video ends and were left out"] if outside else []


def _claim(ctx: PipelineContext, job: Job) -> str | None:
    """Claim the video for ``job``; returns the live owner's job id when it is a duplicate."""
    jobs = ctx.jobs
    for _ in range(3):
        owner_id = jobs.claim_video(job.collection, job.video_id, job.job_id)
        if owner_id is None or not _claim_is_stale(ctx, job, owner_id):
            return owner_id
        jobs.release_video(job.collection, job.video_id, owner_id)
    raise RuntimeError(f"could not claim video {job.video_id} in {job.collection!r}: contended, retry")


def _claim_is_stale(ctx: PipelineContext, job: Job, owner_id: str) -> bool:
    """A claim whose job vanished or failed, or whose finished video was since removed from the store."""
    owner = ctx.jobs.get(owner_id)
    if owner is None or owner.stage is JobStage.FAILED:
        return True
    if owner.stage is JobStage.DONE and owner.clips > 0:
        from videoseek.store import StoreError

        try:
            return not ctx.store.has_video(job.collection, job.video_id)
        except StoreError:  # cannot tell right now: trust the claim (a duplicate answer loses nothing)
            return False
    return False


def _mark_duplicate(jobs: JobStore, job: Job, owner_id: str, problems: list[str]) -> Job:
    """Finish ``job`` as a duplicate of ``owner_id``'s video: nothing to do, nothing stored but its pairs."""
    owner = jobs.get(owner_id)
    return jobs.update(
        job.job_id,
        video_file=owner.video_file if owner else job.video_file,
        stage=JobStage.DONE,
        progress=1.0,
        duplicate_of=owner_id,
        clips=owner.clips if owner else 0,
        problems=problems,
    )


def _record_refusal(jobs: JobStore, job: Job, source: Path, move: bool, reason: str) -> SubmitResult:
    """A submission refused before anything was stored, kept as a failed job so it can be reported."""
    if move:
        source.unlink(missing_ok=True)
    failed = jobs.create(replace(job, video_file="", stage=JobStage.FAILED, reason=reason))
    return SubmitResult(failed.job_id, failed.video_id, duplicate=False)


def _roll_back(ctx: PipelineContext, job: Job, source: Path, move: bool, exc: BaseException) -> None:
    """Undo a half-done submission so the same file can be submitted again."""
    jobs = ctx.jobs
    stored = ctx.layout.videos_dir(job.collection) / job.video_file
    if move and stored.is_file() and not source.exists():
        with contextlib.suppress(OSError):
            stored.replace(source)  # the caller keeps the file it gave us
    stored.unlink(missing_ok=True)
    jobs.update(job.job_id, stage=JobStage.FAILED, reason=f"could not be queued: {exc}")
    with contextlib.suppress(Exception):  # the video never joined the collection: nor do its pairs
        ctx.pairs.delete_video(job.collection, job.video_id)
    jobs.release_video(job.collection, job.video_id, job.job_id)
