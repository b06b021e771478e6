"""The ingest pipeline as plain functions: one stored video in, its clips in the store out.

    queued -> probing -> decoding -> embedding -> indexing -> done      (or failed, with a reason)
                                                                 -> playback copy, when browsers need one

Two steps, so decoding (CPU, sandboxed child process) and embedding (GPU) can run on different workers or
overlap on different threads: :func:`decode_video` probes and samples the video, plans its clips, and writes
the frame cache, the clip plan and the thumbnails; :func:`embed_and_index` embeds one or more decoded
videos in shared batches and upserts their clips. :func:`load_decoded` rebuilds a decoded video from the
frame cache, which is how the Celery ``embed`` task picks up where ``decode`` stopped.

Every write is idempotent (deterministic point ids, upserts, files replaced atomically), so running a step
again after a crash or a redelivery gives the same result, never duplicates. Bad media fails only its job,
with the decoder's reason; a store that is unreachable raises :class:`TransientError` (callers retry).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from videoseek.collections import remove_video_files
from videoseek.context import PipelineContext
from videoseek.embedding import EmbedRequest, ProgressFn, clip_vectors
from videoseek.ingest.playback import playback_decision
from videoseek.ingest.video_pairs import settle_video_pairs
from videoseek.jobs import Job, JobNotFound, JobStage, JobStore
from videoseek.layout import DataLayout, thumbnail_relpath
from videoseek.pairs import PairStore
from videoseek.settings import SampleMode
from videoseek.store import (
    METADATA_KEY,
    ClipPoint,
    CollectionInfo,
    CollectionNotFound,
    CollectionUnreadable,
    InvalidPoint,
    StoreUnavailable,
)
from videoseek.subtitle_text import SubtitleCue
from videoseek.video import (
    ClipPlan,
    FrameCacheMiss,
    MediaRejected,
    SampledVideo,
    plan_video_clips,
    probe,
    run_in_sandbox,
    sample_frames_sandboxed,
    write_thumbnail,
)

log = logging.getLogger(__name__)

# A step (decoding, then embedding + indexing) that was started this many times and never returned (the
# worker was killed: out of memory, a crash, a hard time limit) fails its job instead of being redelivered forever.
MAX_DECODE_ATTEMPTS = 3
MAX_EMBED_ATTEMPTS = 3

# Progress reported at the start of each stage (embedding moves from 0.45 to 0.9 batch by batch).
_PROGRESS = {
    JobStage.PROBING: 0.02,
    JobStage.DECODING: 0.05,
    JobStage.EMBEDDING: 0.45,
    JobStage.INDEXING: 0.9,
    JobStage.DONE: 1.0,
}


class TransientError(RuntimeError):
    """A failure worth retrying later (the vector store is unreachable); the job is left as it was."""


@contextlib.contextmanager
def _transient_store_errors() -> Iterator[None]:
    try:
        yield
    except StoreUnavailable as exc:
        raise TransientError(f"vector store unavailable: {exc}") from exc


@dataclass
class DecodedVideo:
    """A video ready to embed: its sampled frames, their times and its clip plan; its length and the cues of
    its subtitle tracks (stored as training pairs once it is indexed)."""

    job: Job
    collection: CollectionInfo
    timestamps: np.ndarray  # float64 [N]
    frames: np.ndarray  # uint8 [N, H, W, 3]
    clips: list[ClipPlan]
    duration_s: float | None = None
    subtitles: list[SubtitleCue] = field(default_factory=list)


def _advance(ctx: PipelineContext, job_id: str, stage: JobStage, **changes: object) -> Job:
    return ctx.jobs.update(job_id, stage=stage, progress=_PROGRESS[stage], **changes)


def _collection(ctx: PipelineContext, job: Job) -> CollectionInfo | None:
    with _transient_store_errors():
        try:
            return ctx.store.get_collection(job.collection)
        except CollectionNotFound:
            fail_job(
                ctx, job.job_id, f"collection {job.collection!r} was deleted before this video was indexed"
            )
            return None
        except CollectionUnreadable as exc:  # damaged: retrying cannot help until it is restored or deleted
            fail_job(ctx, job.job_id, str(exc))
            return None


# ------------------------------------------------------------------------------------------- decoding


def decode_video(ctx: PipelineContext, job_id: str) -> DecodedVideo | None:
    """Probe and sample the job's stored video, plan clips, write frame cache + thumbnails.

    Returns None when there is nothing to embed: the job is finished already, or it just failed (bad media).
    """
    job = ctx.jobs.require(job_id)
    if job.stage.terminal:
        return None
    collection = _collection(ctx, job)
    if collection is None:
        return None
    if job.stage in (JobStage.EMBEDDING, JobStage.INDEXING):  # redelivered after decoding finished
        # Frames of another sample mode (the setting changed since) are decoded again, in this one.
        cached = _from_cache(ctx, job, collection, ctx.settings.ingest.sample_mode)
        if cached is not None:
            return cached
    if job.attempts >= MAX_DECODE_ATTEMPTS:  # a file that keeps killing its worker must not loop forever
        fail_job(ctx, job_id, f"decoding was interrupted {job.attempts} times (worker crashed or stopped)")
        return None
    path = ctx.layout.videos_dir(job.collection) / job.video_file
    if not job.video_file or not path.is_file():
        fail_job(ctx, job_id, "the stored copy of the file is missing; submit the file again")
        return None
    _advance(ctx, job_id, JobStage.PROBING, attempts=job.attempts + 1)
    sampled = _probe_and_sample(ctx, job_id, path)
    if sampled is None:
        return None
    clips = plan_video_clips(sampled.frames, sampled.timestamps, sampled.duration_s, ctx.settings.ingest)
    if not clips:
        fail_job(ctx, job_id, "no frame of the video could be decoded")
        return None
    if sampled.problems:
        log.info("job %s (%s): decoded with problems: %s", job_id, job.source, "; ".join(sampled.problems))
    cache = ctx.frame_cache(job.collection)
    cache.put(job.video_id, sampled.timestamps, sampled.frames, ctx.settings.ingest.sample_mode)
    _write_thumbnails(ctx, job, sampled.frames, clips)
    _write_clip_plan(ctx, job, clips, sampled.duration_s, sampled.subtitles)
    # Recorded on the job (always, so a re-decode replaces an earlier attempt's list): a damaged file that
    # still indexes tells its uploader what is missing from it.
    job = ctx.jobs.update(
        job_id,
        progress=0.4,
        clips=len(clips),
        problems=list(sampled.problems),
        playback=playback_decision(sampled.info, ctx.settings.ingest),
    )
    # Embed the frames as cached (JPEG in the cache is lossy), so a video gets the same vectors whether it
    # is embedded right here, by another worker from the cache, or re-indexed later.
    timestamps, frames = cache.get(job.video_id)
    return DecodedVideo(job, collection, timestamps, frames, clips, sampled.duration_s, sampled.subtitles)


def _probe_and_sample(ctx: PipelineContext, job_id: str, path: Path) -> SampledVideo | None:
    """Sample frames in the sandbox; a refused or undecodable file fails the job (None)."""
    limits = ctx.settings.ingest
    try:
        # Even headers are parsed in the sandbox: FFmpeg never reads an untrusted file in this process.
        run_in_sandbox(
            probe,
            (path, limits),
            timeout_s=min(60.0, limits.decode_timeout_s),
            memory_bytes=limits.decode_memory_bytes,
        )
        _advance(ctx, job_id, JobStage.DECODING)
        return sample_frames_sandboxed(path, limits, fps=limits.sample_fps, max_side=limits.frame_max_side)
    except MediaRejected as exc:
        fail_job(ctx, job_id, exc.reason)
        return None


def _thumbnail_frame(clip: ClipPlan) -> int:
    """The clip's middle representative frame."""
    return clip.frame_indices[len(clip.frame_indices) // 2]


def _write_thumbnails(ctx: PipelineContext, job: Job, frames: np.ndarray, clips: Sequence[ClipPlan]) -> None:
    for clip in clips:
        write_thumbnail(
            frames[_thumbnail_frame(clip)],
            ctx.layout.thumbnail(job.collection, job.video_id, clip.index),
            max_side=ctx.settings.ingest.thumbnail_max_side,
        )


def _write_clip_plan(
    ctx: PipelineContext,
    job: Job,
    clips: Sequence[ClipPlan],
    duration_s: float,
    subtitles: Sequence[SubtitleCue] = (),
) -> None:
    """Keep the plan next to the thumbnails: the embed step (maybe another worker) and re-indexing use it; and
    the subtitle cues, which the embed step stores as training pairs."""
    path = ctx.layout.clip_plan(job.collection, job.video_id)
    document = {
        "duration_s": float(duration_s),
        "clips": [asdict(c) for c in clips],
        "subtitles": [asdict(cue) for cue in subtitles],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class ClipPlanFile:
    """What decoding wrote down about a video: its clips, its length, its subtitle cues."""

    clips: list[ClipPlan]
    duration_s: float | None
    subtitles: list[SubtitleCue]


def read_clip_plan_file(layout: DataLayout, collection: str, video_id: str) -> ClipPlanFile | None:
    """The clip plan written when the video was decoded, or None if there is none (or it is unreadable)."""
    path = layout.clip_plan(collection, video_id)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        duration = document.get("duration_s")
        return ClipPlanFile(
            clips=[ClipPlan(**c) for c in document["clips"]],
            duration_s=None if duration is None else float(duration),
            subtitles=[SubtitleCue(**cue) for cue in document.get("subtitles", [])],  # none in older plans
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def read_clip_plan(layout: DataLayout, collection: str, video_id: str) -> list[ClipPlan] | None:
    """The clips of :func:`read_clip_plan_file`, or None."""
    plan = read_clip_plan_file(layout, collection, video_id)
    return None if plan is None else plan.clips


def video_duration(layout: DataLayout, collection: str, video_id: str) -> float | None:
    """How long a decoded video is (what decoded, in seconds), or None when it is not known here."""
    plan = read_clip_plan_file(layout, collection, video_id)
    return None if plan is None else plan.duration_s


def _from_cache(
    ctx: PipelineContext, job: Job, collection: CollectionInfo, sample_mode: SampleMode | None = None
) -> DecodedVideo | None:
    """The decoded video from the frame cache; None when missing (or sampled in another ``sample_mode``).

    The embed step asks for no mode: it embeds what the decode step wrote, with the clip plan made from it."""
    plan = read_clip_plan_file(ctx.layout, job.collection, job.video_id)
    if plan is None:
        return None
    try:
        timestamps, frames = ctx.frame_cache(job.collection).get(job.video_id, sample_mode)
    except FrameCacheMiss:
        return None
    return DecodedVideo(job, collection, timestamps, frames, plan.clips, plan.duration_s, plan.subtitles)


def load_decoded(ctx: PipelineContext, job_id: str) -> DecodedVideo | None:
    """A decoded job rebuilt from the frame cache and its clip plan (how the Celery embed task starts).

    None when there is nothing to embed: the job is finished, or its frames are gone (then it is failed).
    """
    job = ctx.jobs.require(job_id)
    if job.stage.terminal:
        return None
    collection = _collection(ctx, job)
    if collection is None:
        return None
    decoded = _from_cache(ctx, job, collection)
    if decoded is None:
        fail_job(ctx, job_id, "decoded frames are missing from the frame cache; submit the file again")
    return decoded


# ------------------------------------------------------------------------------- embedding + indexing


def embed_and_index(ctx: PipelineContext, videos: Sequence[DecodedVideo]) -> None:
    """Embed the frames of ``videos`` in shared batches and upsert each video's clips; marks each done.

    A video whose collection was made for another base model fails alone. Raises :class:`TransientError`
    when the store is unreachable (nothing is lost: running this again redoes the same writes).
    """
    todo = [v for v in videos if _ready_to_embed(ctx, v)]
    if not todo:
        return
    attempts = {v.job.job_id: _start_embedding(ctx, v.job.job_id) for v in todo}
    try:
        total = sum(len(v.frames) for v in todo)
        requests = [EmbedRequest(v.frames, v.collection.adapter_version) for v in todo]
        vectors = ctx.embedder.embed(requests, progress=_embed_progress(ctx, todo, total))
        for video, frame_vectors in zip(todo, vectors, strict=True):
            _index(ctx, video, frame_vectors)
    except Exception:  # it returned (to be retried, or to fail alone): not an interrupted attempt
        for job_id, attempt in attempts.items():
            with contextlib.suppress(JobNotFound):  # deleted meanwhile: nothing to count
                ctx.jobs.update(job_id, attempts=attempt - 1)
        raise


def _start_embedding(ctx: PipelineContext, job_id: str) -> int:
    """Mark the job embedding and count the attempt; returns the new attempt count."""
    job = ctx.jobs.require(job_id)
    interrupted = job.attempts if job.stage in (JobStage.EMBEDDING, JobStage.INDEXING) else 0
    return _advance(ctx, job_id, JobStage.EMBEDDING, attempts=interrupted + 1).attempts


def _ready_to_embed(ctx: PipelineContext, video: DecodedVideo) -> bool:
    job = ctx.jobs.get(video.job.job_id)
    if job is None or job.stage.terminal:
        return False
    if job.stage in (JobStage.EMBEDDING, JobStage.INDEXING) and job.attempts >= MAX_EMBED_ATTEMPTS:
        fail_job(
            ctx,
            job.job_id,
            f"embedding was interrupted {job.attempts} times (the worker was killed: out of memory? lower "
            "VIDEOSEEK_WORKER__EMBED_BATCH_SIZE or give the worker more memory)",
        )
        return False
    if video.collection.model != ctx.embedder.fingerprint:
        fail_job(
            ctx,
            job.job_id,
            f"collection {job.collection!r} was created for base model {video.collection.model}, but this "
            f"worker runs {ctx.embedder.clip.identity.describe()}; set VIDEOSEEK_MODEL to the collection's "
            "model or ingest into a collection created for this one",
        )
        return False
    return True


def _embed_progress(ctx: PipelineContext, videos: Sequence[DecodedVideo], total: int) -> ProgressFn:
    start, span = _PROGRESS[JobStage.EMBEDDING], _PROGRESS[JobStage.INDEXING] - _PROGRESS[JobStage.EMBEDDING]

    def report(done: int, _total: int) -> None:
        for video in videos:  # a shared batch advances every video in it together
            ctx.jobs.update(video.job.job_id, progress=round(start + span * done / max(total, 1), 3))

    return report


def build_points(video: DecodedVideo, frame_vectors: np.ndarray) -> list[ClipPoint]:
    """The store records of one video's clips (the payload the search service reads back)."""
    job = video.job
    return clip_points(
        job.collection,
        job.video_id,
        video.clips,
        video.timestamps,
        frame_vectors,
        source=job.source,
        metadata=job.metadata,
        adapter_version=video.collection.adapter_version,
    )


def clip_points(
    collection: str,
    video_id: str,
    clips: Sequence[ClipPlan],
    timestamps: np.ndarray,
    frame_vectors: np.ndarray,
    *,
    source: str,
    metadata: dict[str, object],
    adapter_version: str | None,
) -> list[ClipPoint]:
    """One video's clips as store records from its frame vectors (ingest and re-index build them alike)."""
    base_payload = {"source": source, METADATA_KEY: dict(metadata), "adapter_version": adapter_version}
    points = []
    for clip in clips:
        frames, pooled = clip_vectors(frame_vectors, clip.frame_indices)
        points.append(
            ClipPoint(
                video_id=video_id,
                clip_index=clip.index,
                start_s=clip.start_s,
                end_s=clip.end_s,
                pooled=pooled,
                frames=frames,
                frame_times=[float(timestamps[i]) for i in clip.frame_indices],
                payload={**base_payload, "thumbnail": thumbnail_relpath(collection, video_id, clip.index)},
            )
        )
    return points


def _index(ctx: PipelineContext, video: DecodedVideo, frame_vectors: np.ndarray) -> None:
    job_id = video.job.job_id
    try:
        _advance(ctx, job_id, JobStage.INDEXING)
        # Under the collection's write lock a re-index cannot switch versions between reading the adapter
        # version and upserting: the clips land in the version whose adapter embedded them.
        with _transient_store_errors(), ctx.locks.hold(video.job.collection):
            video, frame_vectors = _with_current_adapter(ctx, video, frame_vectors)
            points = build_points(video, frame_vectors)
            ctx.store.upsert(video.job.collection, points)
        problems = settle_video_pairs(ctx, video.job, video.duration_s, video.subtitles)
    except InvalidPoint as exc:
        fail_job(ctx, job_id, f"could not index the clips: {exc}")
        return
    except CollectionUnreadable as exc:
        fail_job(ctx, job_id, str(exc))
        return
    except CollectionNotFound:
        fail_job(
            ctx, job_id, f"collection {video.job.collection!r} was deleted before this video was indexed"
        )
        return
    noted = {"problems": [*video.job.problems, *problems]} if problems else {}
    _advance(ctx, job_id, JobStage.DONE, clips=len(points), **noted)


def _with_current_adapter(
    ctx: PipelineContext, video: DecodedVideo, frame_vectors: np.ndarray
) -> tuple[DecodedVideo, np.ndarray]:
    """The video and its frame vectors under the collection's adapter now (re-embedded if re-indexed since)."""
    current = ctx.store.get_collection(video.job.collection)
    if current.adapter_version == video.collection.adapter_version:
        return video, frame_vectors
    log.info(
        "job %s: collection %r was re-indexed while this video was in flight; embedding it again",
        video.job.job_id,
        video.job.collection,
    )
    (vectors,) = ctx.embedder.embed([EmbedRequest(video.frames, current.adapter_version)])
    return replace(video, collection=current), vectors


# ------------------------------------------------------------------------------------------ whole runs


def ingest_video(job_id: str, ctx: PipelineContext) -> Job:
    """Run the whole pipeline for one job in this thread, playback copy included; returns the final job."""
    from videoseek.ingest.playback import write_playback

    decoded = decode_video(ctx, job_id)
    if decoded is not None:
        embed_and_index(ctx, [decoded])
    write_playback(ctx, job_id)
    return ctx.jobs.require(job_id)


def fail_job(ctx: PipelineContext, job_id: str, reason: str) -> None:
    """Mark a job failed with ``reason`` and undo what it wrote, so the file can be submitted again."""
    job = ctx.jobs.get(job_id)
    if job is None or job.stage is JobStage.DONE:
        return
    ctx.jobs.update(job_id, stage=JobStage.FAILED, reason=reason)
    if ctx.jobs.video_owner(job.collection, job.video_id) == job_id:
        with contextlib.suppress(Exception):  # best effort: the store may be the reason we are failing
            ctx.store.delete_video(job.collection, job.video_id)
    _release(ctx.layout, ctx.jobs, ctx.pairs, job)


def fail_job_quietly(jobs: JobStore, layout: DataLayout, pairs: PairStore, job_id: str, reason: str) -> None:
    """:func:`fail_job` without touching the clip store or the model: for a Celery parent process."""
    job = jobs.get(job_id)
    if job is None or job.stage.terminal:
        return
    jobs.update(job_id, stage=JobStage.FAILED, reason=reason)
    _release(layout, jobs, pairs, job)


def _release(layout: DataLayout, jobs: JobStore, pairs: PairStore, job: Job) -> None:
    """Remove a failed job's files and training pairs (the video never joined the collection) and free its
    claim on the video (unless another job owns it now)."""
    if jobs.video_owner(job.collection, job.video_id) != job.job_id:
        return
    with contextlib.suppress(OSError, ValueError):
        remove_video_files(layout, job.collection, job.video_id)
    pairs.delete_video(job.collection, job.video_id)
    jobs.release_video(job.collection, job.video_id, job.job_id)
