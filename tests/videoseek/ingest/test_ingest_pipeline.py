"""The embedded ingest path end to end: real decoding (PyAV, sandboxed), the toy CLIP, the Qdrant Edge store."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from ingest_helpers import decoded_but_not_indexed, ingest_all
from PIL import Image

from videoseek.collections import create_collection, delete_collection, delete_video
from videoseek.context import PipelineContext
from videoseek.ingest.pipeline import (
    MAX_EMBED_ATTEMPTS,
    decode_video,
    embed_and_index,
    load_decoded,
    read_clip_plan,
)
from videoseek.jobs import Job, JobStage, new_job_id
from videoseek.metadata import MAX_METADATA_DEPTH, InvalidMetadata, MetadataRule
from videoseek.runtime.embedded import EmbeddedRuntime, embedded_context
from videoseek.runtime.ingest_threads import EmbeddedRunner
from videoseek.store import SearchFilter
from videoseek.video import FrameCache


def write_audio_only(path: Path) -> Path:
    """An MP4 holding one second of AAC audio and no video stream."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=44100)
        for i in range(44):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts, frame.time_base = 44100, i * 1024, Fraction(1, 44100)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def test_ingested_videos_are_searchable_with_clips_thumbnails_and_cached_frames(
    runtime: EmbeddedRuntime, toy_videos: list[dict[str, Any]]
) -> None:
    create_collection(runtime.context, "films")
    jobs = ingest_all(runtime, "films", [r["path"] for r in toy_videos])
    store, layout = runtime.context.store, runtime.context.layout
    for job, record in zip(jobs, toy_videos, strict=True):
        assert (job.stage, job.reason, job.progress) == (JobStage.DONE, None, 1.0)
        # 12 s at 1 fps, 10 s windows every 5 s, the last one aligned to the end: [0, 10] and [2, 12].
        hits = store.search(
            "films",
            np.ones(store.get_collection("films").dim, np.float32),
            10,
            SearchFilter(video_ids=[job.video_id]),
        )
        spans = sorted((h.clip_index, h.start_s, h.end_s) for h in hits)
        assert spans == [(0, 0.0, 10.0), (1, 2.0, 12.0)] and job.clips == 2
        assert store.count("films", job.video_id) == 2
        timestamps, frames = FrameCache(layout.frames_dir("films")).get(job.video_id)
        assert frames.shape[0] == 12 and frames.dtype == np.uint8 and np.allclose(timestamps, np.arange(12))
        for hit in hits:
            assert hit.payload["source"] == Path(record["path"]).name
            assert hit.payload["metadata"] == job.metadata and hit.payload["adapter_version"] is None
            assert all(hit.start_s <= t <= hit.end_s for t in hit.frame_times) and len(hit.frame_times) == 10
            thumb = layout.root / hit.payload["thumbnail"]
            assert thumb == layout.thumbnails_dir("films", job.video_id) / f"{hit.clip_index}.jpg"
            with Image.open(thumb) as image:
                assert image.format == "JPEG"
        stored = layout.video_file("films", job.video_id)
        assert stored is not None and stored.read_bytes() == Path(record["path"]).read_bytes()


def test_a_caption_finds_its_video_near_the_top(
    runtime: EmbeddedRuntime, toy_videos: list[dict[str, Any]]
) -> None:
    """The toy text tower's embedding of a video's caption ranks that video's clips first (or close)."""
    from videoseek.clip import get_clip
    from videoseek.encoders import encode_texts

    create_collection(runtime.context, "films")
    jobs = ingest_all(runtime, "films", [r["path"] for r in toy_videos])
    store = runtime.context.store
    texts = encode_texts(get_clip(runtime.settings.model, "cpu"), [r["caption"] for r in toy_videos]).numpy()
    ranks = []
    for job, text in zip(jobs, texts, strict=True):
        videos = list(dict.fromkeys(h.video_id for h in store.search("films", text, 6)))
        ranks.append(videos.index(job.video_id))
    # Among three videos: in the first two for every caption, first for most.
    assert max(ranks) <= 1 and ranks.count(0) >= 2, ranks


def test_resubmitting_a_file_changes_nothing(
    runtime: EmbeddedRuntime, toy_videos: list[dict[str, Any]]
) -> None:
    create_collection(runtime.context, "films")
    path = toy_videos[0]["path"]
    (first,) = ingest_all(runtime, "films", [path])
    store, cache = runtime.context.store, runtime.context.frame_cache("films")
    points, frames_file = store.count("films"), cache.path_for(first.video_id)
    mtime = frames_file.stat().st_mtime_ns
    copy = runtime.settings.data_dir.parent / "renamed.mp4"
    shutil.copyfile(path, copy)
    again = runtime.submit_ingest("films", copy)
    assert again.duplicate and again.video_id == first.video_id and again.job_id != first.job_id
    job = runtime.context.jobs.get(again.job_id)
    assert job is not None and job.stage is JobStage.DONE and job.duplicate_of == first.job_id
    assert job.source == "renamed.mp4" and job.clips == first.clips
    assert runtime.runner.pending() == 0  # nothing was queued
    assert store.count("films") == points and frames_file.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in runtime.context.layout.videos_dir("films").iterdir()) == [first.video_file]


def test_concurrent_uploads_of_one_file_index_it_once(
    runtime: EmbeddedRuntime, toy_videos: list[dict[str, Any]], tmp_path: Path
) -> None:
    create_collection(runtime.context, "films")
    runtime.start()
    copies = []
    for i in range(6):  # six uploads of the same bytes, each moved into the collection like an API upload
        copy = tmp_path / f"upload-{i}.mp4"
        shutil.copyfile(toy_videos[0]["path"], copy)
        copies.append(copy)
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda c: runtime.submit_ingest("films", c, move=True), copies))
    assert runtime.runner.join(60)
    assert len({r.video_id for r in results}) == 1 and sum(not r.duplicate for r in results) == 1
    assert not any(c.exists() for c in copies)  # moved or, for duplicates, deleted
    original = next(r for r in results if not r.duplicate)
    for r in results:
        job = runtime.context.jobs.get(r.job_id)
        assert job is not None and job.stage is JobStage.DONE
        assert job.duplicate_of == (None if r is original else original.job_id)
    assert runtime.context.store.count("films") == 2


def test_bad_files_fail_with_a_reason_and_lose_nothing_else(
    runtime: EmbeddedRuntime, toy_videos: list[dict[str, Any]], tmp_path: Path
) -> None:
    create_collection(runtime.context, "films")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    noise = tmp_path / "noise.mkv"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 40_000, dtype=np.uint8).tobytes())
    audio = write_audio_only(tmp_path / "audio.mp4")
    good = toy_videos[1]["path"]
    jobs = ingest_all(runtime, "films", [empty, noise, good, audio])
    reasons = {j.source: j.reason for j in jobs if j.stage is JobStage.FAILED}
    assert set(reasons) == {"empty.mp4", "noise.mkv", "audio.mp4"}
    assert "empty" in reasons["empty.mp4"] and "no video stream" in reasons["audio.mp4"]
    assert "not a video file" in reasons["noise.mkv"]
    good_job = jobs[2]
    assert good_job.stage is JobStage.DONE and runtime.context.store.count("films") == good_job.clips == 2
    # Failed jobs leave no files behind and free the file for another try (not a duplicate).
    layout = runtime.context.layout
    assert [p.name for p in layout.videos_dir("films").iterdir()] == [good_job.video_file]
    assert [p.name for p in layout.collection_thumbnails_dir("films").iterdir()] == [good_job.video_id]
    retry = runtime.submit_ingest("films", empty)
    assert not retry.duplicate
    assert runtime.runner.join(60)
    assert runtime.context.jobs.require(retry.job_id).stage is JobStage.FAILED


def test_a_collection_for_another_model_fails_the_job_with_the_fix(
    runtime: EmbeddedRuntime, toy_videos: list[dict[str, Any]]
) -> None:
    runtime.context.store.create_collection("other", dim=128, model="0123456789abcdef")
    (job,) = ingest_all(runtime, "other", [toy_videos[0]["path"]])
    assert job.stage is JobStage.FAILED and "VIDEOSEEK_MODEL" in (job.reason or "")
    assert runtime.context.store.count("other") == 0


def test_unfinished_jobs_resume_when_the_runner_starts(
    ctx: PipelineContext, toy_videos: list[dict[str, Any]]
) -> None:
    """A process that stopped with queued jobs (crash, restart) finishes them at the next start."""
    create_collection(ctx, "films")
    layout, jobs = ctx.layout, ctx.jobs
    source = Path(toy_videos[2]["path"])
    video_id = "ab" * 32  # any hex id: the pipeline trusts the stored job
    job = jobs.create(
        Job(new_job_id(), "films", video_id, source.name, f"{video_id}.mp4", stage=JobStage.DECODING)
    )
    jobs.claim_video("films", video_id, job.job_id)
    layout.videos_dir("films").mkdir(parents=True)
    shutil.copyfile(source, layout.videos_dir("films") / job.video_file)
    runner = EmbeddedRunner(ctx).start(recover=True)
    try:
        assert runner.join(60)
    finally:
        runner.stop()
    done = jobs.require(job.job_id)
    assert done.stage is JobStage.DONE and ctx.store.count("films", video_id) == done.clips == 2


def test_a_job_interrupted_too_often_fails_instead_of_looping(ctx: PipelineContext) -> None:
    """A file that keeps killing its worker (decoding restarted 3 times) fails at the next start."""
    create_collection(ctx, "films")
    jobs = ctx.jobs
    job = jobs.create(
        Job(new_job_id(), "films", "cd" * 32, "bad.mp4", "x.mp4", stage=JobStage.DECODING, attempts=3)
    )
    jobs.claim_video("films", job.video_id, job.job_id)
    runner = EmbeddedRunner(ctx).start(recover=True)
    try:
        assert runner.join(30)
    finally:
        runner.stop()
    failed = jobs.require(job.job_id)
    assert failed.stage is JobStage.FAILED and "interrupted 3 times" in (failed.reason or "")
    assert jobs.video_owner("films", job.video_id) is None


@pytest.mark.parametrize(
    ("killed", "stage"), [(MAX_EMBED_ATTEMPTS - 1, JobStage.DONE), (MAX_EMBED_ATTEMPTS, JobStage.FAILED)]
)
def test_embedding_killed_too_often_fails_instead_of_being_redelivered_forever(
    ctx: PipelineContext, toy_videos: list[dict[str, Any]], killed: int, stage: JobStage
) -> None:
    """A video whose embedding keeps killing its worker (out of memory) fails with the fix in its reason."""
    create_collection(ctx, "films")
    context = ctx
    decoded = decoded_but_not_indexed(ctx, Path(toy_videos[0]["path"]))
    job_id = decoded.job.job_id
    # what `killed` starts of embedding that never returned leave behind; then the message comes back
    context.jobs.update(job_id, stage=JobStage.EMBEDDING, attempts=killed)
    redelivered = load_decoded(context, job_id)
    assert redelivered is not None
    embed_and_index(context, [redelivered])
    job = context.jobs.require(job_id)
    assert job.stage is stage
    if stage is JobStage.FAILED:
        assert f"embedding was interrupted {killed} times" in (job.reason or "")
        assert "VIDEOSEEK_WORKER__EMBED_BATCH_SIZE" in (job.reason or "")
        assert ctx.store.count("films") == 0


def test_a_redelivered_decode_samples_again_when_the_sample_mode_changed(
    ctx: PipelineContext, toy_videos: list[dict[str, Any]]
) -> None:
    """Cached frames of one ingest.sample_mode are not reused by a decode step running in the other."""
    create_collection(ctx, "films")
    decoded = decoded_but_not_indexed(ctx, Path(toy_videos[0]["path"]))  # sampled in the default, exact
    job_id, video_id = decoded.job.job_id, decoded.job.video_id
    ctx.jobs.update(job_id, stage=JobStage.EMBEDDING)  # the decode message comes back after the step
    attempts = ctx.jobs.require(job_id).attempts
    assert decode_video(ctx, job_id) is not None and ctx.jobs.require(job_id).attempts == attempts  # cached
    ingest = ctx.settings.ingest.model_copy(update={"sample_mode": "keyframes"})
    ctx.settings = ctx.settings.model_copy(update={"ingest": ingest})
    again = decode_video(ctx, job_id)
    assert again is not None and ctx.jobs.require(job_id).attempts == attempts + 1  # decoded again
    cache = ctx.frame_cache("films")
    cache.get(video_id, sample_mode="keyframes")  # the entry is now the keyframes mode's
    # The embed step embeds whatever the decode step wrote, in whichever mode: it never asks for one.
    ctx.jobs.update(job_id, stage=JobStage.EMBEDDING)
    assert load_decoded(ctx, job_id) is not None


def test_delete_video_and_collection_remove_points_files_and_claims(
    runtime: EmbeddedRuntime, toy_videos: list[dict[str, Any]]
) -> None:
    create_collection(runtime.context, "films")
    a, b = ingest_all(runtime, "films", [toy_videos[0]["path"], toy_videos[1]["path"]])
    layout = runtime.context.layout
    assert read_clip_plan(layout, "films", a.video_id) is not None
    assert delete_video(runtime.context, "films", a.video_id) == 2
    assert layout.video_file("films", a.video_id) is None
    assert not layout.thumbnails_dir("films", a.video_id).exists()
    assert not FrameCache(layout.frames_dir("films")).has(a.video_id)
    again = runtime.submit_ingest("films", toy_videos[0]["path"])
    assert not again.duplicate  # deleted videos are indexed again
    runtime.runner.stop()
    delete_collection(runtime.context, "films")
    assert runtime.context.store.list_collections() == []
    assert not layout.videos_dir("films").exists() and not layout.frames_dir("films").exists()
    assert runtime.context.jobs.list("films") == [] and runtime.context.jobs.get(b.job_id) is None


def test_submit_refuses_metadata_the_stores_could_not_read_back_and_keeps_nothing(
    runtime: EmbeddedRuntime, toy_videos: list[dict[str, Any]], tmp_path: Path
) -> None:
    create_collection(runtime.context, "films")
    runtime.start()
    upload = tmp_path / "upload.mp4"
    shutil.copyfile(toy_videos[0]["path"], upload)
    for metadata, rule in (({"x": float("nan")}, MetadataRule.NUMBER), ({"n": 2**64}, MetadataRule.INTEGER)):
        with pytest.raises(InvalidMetadata) as caught:
            runtime.submit_ingest("films", upload, metadata=metadata, move=True)
        assert caught.value.rule is rule
    assert upload.exists()  # the caller keeps its file
    assert runtime.context.jobs.list("films") == []
    assert not runtime.context.layout.videos_dir("films").exists()


def test_metadata_at_the_depth_limit_is_indexed_and_read_back_after_a_restart(
    runtime: EmbeddedRuntime, toy_videos: list[dict[str, Any]]
) -> None:
    create_collection(runtime.context, "films")
    deep: Any = "bottom"
    for _ in range(MAX_METADATA_DEPTH - 1):  # the metadata object is the first level
        deep = {"down": deep}
    metadata = {"deep": deep, "a.b": "dot", "n": 2**63 - 1}
    runtime.start()
    result = runtime.submit_ingest("films", toy_videos[0]["path"], metadata=metadata)
    assert runtime.runner.join(timeout=120), "ingest did not finish in 120 s"
    job = runtime.context.jobs.get(result.job_id)
    assert job is not None and job.stage is JobStage.DONE, job
    runtime.close()  # a restart: the shard is opened again from its files
    context = embedded_context(runtime.settings)
    store = context.store
    query = np.ones(store.get_collection("films").dim, dtype=np.float32)
    hits = store.search("films", query, 10, SearchFilter(metadata={"a.b": "dot"}))
    assert hits and all(hit.payload["metadata"] == metadata for hit in hits)
    context.close()
