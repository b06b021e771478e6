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
from PIL import Image
from worker_helpers import decoded_but_not_indexed

from videoseek.core.collections import (
    close_shared_stores,
    create_collection,
    delete_collection,
    delete_video,
    shared_store,
)
from videoseek.core.layout import DataLayout
from videoseek.core.metadata import MAX_METADATA_DEPTH, InvalidMetadata, MetadataRule
from videoseek.core.settings import Settings
from videoseek.core.store import SearchFilter
from videoseek.core.video import FrameCache
from videoseek.worker.jobs import Job, JobStage, get_job_store, new_job_id
from videoseek.worker.pipeline import MAX_EMBED_ATTEMPTS, embed_and_index, load_decoded, read_clip_plan
from videoseek.worker.runner import EmbeddedRunner, get_embedded_runner, stop_embedded_runner
from videoseek.worker.submit import find_video_file, get_job, submit_ingest


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


def ingest_all(settings: Settings, collection: str, paths: list[Path], **kw: Any) -> list[Job]:
    results = [
        submit_ingest(collection, p, metadata={"n": i}, settings=settings, **kw) for i, p in enumerate(paths)
    ]
    assert get_embedded_runner(settings).join(timeout=120), "ingest did not finish in 120 s"
    jobs = [get_job(r.job_id, settings) for r in results]
    assert all(j is not None for j in jobs)
    return jobs  # type: ignore[return-value]


def test_ingested_videos_are_searchable_with_clips_thumbnails_and_cached_frames(
    embedded: Settings, toy_videos: list[dict[str, Any]]
) -> None:
    create_collection(embedded, "films")
    jobs = ingest_all(embedded, "films", [r["path"] for r in toy_videos])
    store, layout = shared_store(embedded), DataLayout(embedded.data_dir)
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
        stored = find_video_file(layout, "films", job.video_id)
        assert stored is not None and stored.read_bytes() == Path(record["path"]).read_bytes()


def test_a_caption_finds_its_video_near_the_top(embedded: Settings, toy_videos: list[dict[str, Any]]) -> None:
    """The toy text tower's embedding of a video's caption ranks that video's clips first (or close)."""
    from videoseek.core.clip import get_clip
    from videoseek.core.encoders import encode_texts

    create_collection(embedded, "films")
    jobs = ingest_all(embedded, "films", [r["path"] for r in toy_videos])
    store = shared_store(embedded)
    texts = encode_texts(get_clip(embedded.model, "cpu"), [r["caption"] for r in toy_videos]).numpy()
    ranks = []
    for job, text in zip(jobs, texts, strict=True):
        videos = list(dict.fromkeys(h.video_id for h in store.search("films", text, 6)))
        ranks.append(videos.index(job.video_id))
    # Among three videos: in the first two for every caption, first for most.
    assert max(ranks) <= 1 and ranks.count(0) >= 2, ranks


def test_resubmitting_a_file_changes_nothing(embedded: Settings, toy_videos: list[dict[str, Any]]) -> None:
    create_collection(embedded, "films")
    path = toy_videos[0]["path"]
    (first,) = ingest_all(embedded, "films", [path])
    store, cache = shared_store(embedded), FrameCache(DataLayout(embedded.data_dir).frames_dir("films"))
    points, frames_file = store.count("films"), cache.path_for(first.video_id)
    mtime = frames_file.stat().st_mtime_ns
    copy = embedded.data_dir.parent / "renamed.mp4"
    shutil.copyfile(path, copy)
    again = submit_ingest("films", copy, settings=embedded)
    assert again.duplicate and again.video_id == first.video_id and again.job_id != first.job_id
    job = get_job(again.job_id, embedded)
    assert job is not None and job.stage is JobStage.DONE and job.duplicate_of == first.job_id
    assert job.source == "renamed.mp4" and job.clips == first.clips
    assert get_embedded_runner(embedded).pending() == 0  # nothing was queued
    assert store.count("films") == points and frames_file.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in DataLayout(embedded.data_dir).videos_dir("films").iterdir()) == [
        first.video_file
    ]


def test_concurrent_uploads_of_one_file_index_it_once(
    embedded: Settings, toy_videos: list[dict[str, Any]], tmp_path: Path
) -> None:
    create_collection(embedded, "films")
    copies = []
    for i in range(6):  # six uploads of the same bytes, each moved into the collection like an API upload
        copy = tmp_path / f"upload-{i}.mp4"
        shutil.copyfile(toy_videos[0]["path"], copy)
        copies.append(copy)
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda c: submit_ingest("films", c, move=True, settings=embedded), copies))
    assert get_embedded_runner(embedded).join(60)
    assert len({r.video_id for r in results}) == 1 and sum(not r.duplicate for r in results) == 1
    assert not any(c.exists() for c in copies)  # moved or, for duplicates, deleted
    original = next(r for r in results if not r.duplicate)
    for r in results:
        job = get_job(r.job_id, embedded)
        assert job is not None and job.stage is JobStage.DONE
        assert job.duplicate_of == (None if r is original else original.job_id)
    assert shared_store(embedded).count("films") == 2


def test_bad_files_fail_with_a_reason_and_lose_nothing_else(
    embedded: Settings, toy_videos: list[dict[str, Any]], tmp_path: Path
) -> None:
    create_collection(embedded, "films")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    noise = tmp_path / "noise.mkv"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 40_000, dtype=np.uint8).tobytes())
    audio = write_audio_only(tmp_path / "audio.mp4")
    good = toy_videos[1]["path"]
    jobs = ingest_all(embedded, "films", [empty, noise, good, audio])
    reasons = {j.source: j.reason for j in jobs if j.stage is JobStage.FAILED}
    assert set(reasons) == {"empty.mp4", "noise.mkv", "audio.mp4"}
    assert "empty" in reasons["empty.mp4"] and "no video stream" in reasons["audio.mp4"]
    assert "not a video file" in reasons["noise.mkv"]
    good_job = jobs[2]
    assert good_job.stage is JobStage.DONE and shared_store(embedded).count("films") == good_job.clips == 2
    # Failed jobs leave no files behind and free the file for another try (not a duplicate).
    layout = DataLayout(embedded.data_dir)
    assert [p.name for p in layout.videos_dir("films").iterdir()] == [good_job.video_file]
    assert [p.name for p in (layout.root / "thumbnails" / "films").iterdir()] == [good_job.video_id]
    retry = submit_ingest("films", empty, settings=embedded)
    assert not retry.duplicate
    assert get_embedded_runner(embedded).join(60)
    assert get_job(retry.job_id, embedded).stage is JobStage.FAILED  # type: ignore[union-attr]


def test_a_collection_for_another_model_fails_the_job_with_the_fix(
    embedded: Settings, toy_videos: list[dict[str, Any]]
) -> None:
    shared_store(embedded).create_collection("other", dim=128, model="0123456789abcdef")
    (job,) = ingest_all(embedded, "other", [toy_videos[0]["path"]])
    assert job.stage is JobStage.FAILED and "VIDEOSEEK_MODEL" in (job.reason or "")
    assert shared_store(embedded).count("other") == 0


def test_unfinished_jobs_resume_when_the_runner_starts(
    embedded: Settings, toy_videos: list[dict[str, Any]]
) -> None:
    """A process that stopped with queued jobs (crash, restart) finishes them at the next start."""
    create_collection(embedded, "films")
    layout, jobs = DataLayout(embedded.data_dir), get_job_store(embedded)
    source = Path(toy_videos[2]["path"])
    video_id = "ab" * 32  # any hex id: the pipeline trusts the stored job
    job = jobs.create(
        Job(new_job_id(), "films", video_id, source.name, f"{video_id}.mp4", stage=JobStage.DECODING)
    )
    jobs.claim_video("films", video_id, job.job_id)
    layout.videos_dir("films").mkdir(parents=True)
    shutil.copyfile(source, layout.videos_dir("films") / job.video_file)
    runner = EmbeddedRunner(embedded).start(recover=True)
    try:
        assert runner.join(60)
    finally:
        runner.stop()
    done = jobs.require(job.job_id)
    assert done.stage is JobStage.DONE and shared_store(embedded).count("films", video_id) == done.clips == 2


def test_a_job_interrupted_too_often_fails_instead_of_looping(embedded: Settings) -> None:
    """A file that keeps killing its worker (decoding restarted 3 times) fails at the next start."""
    create_collection(embedded, "films")
    jobs = get_job_store(embedded)
    job = jobs.create(
        Job(new_job_id(), "films", "cd" * 32, "bad.mp4", "x.mp4", stage=JobStage.DECODING, attempts=3)
    )
    jobs.claim_video("films", job.video_id, job.job_id)
    runner = EmbeddedRunner(embedded).start(recover=True)
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
    embedded: Settings, toy_videos: list[dict[str, Any]], killed: int, stage: JobStage
) -> None:
    """A video whose embedding keeps killing its worker (out of memory) fails with the fix in its reason."""
    create_collection(embedded, "films")
    context, decoded = decoded_but_not_indexed(embedded, Path(toy_videos[0]["path"]))
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
        assert shared_store(embedded).count("films") == 0


def test_delete_video_and_collection_remove_points_files_and_claims(
    embedded: Settings, toy_videos: list[dict[str, Any]]
) -> None:
    create_collection(embedded, "films")
    a, b = ingest_all(embedded, "films", [toy_videos[0]["path"], toy_videos[1]["path"]])
    layout = DataLayout(embedded.data_dir)
    assert read_clip_plan(layout, "films", a.video_id) is not None
    assert delete_video(embedded, "films", a.video_id) == 2
    assert find_video_file(layout, "films", a.video_id) is None
    assert not layout.thumbnails_dir("films", a.video_id).exists()
    assert not FrameCache(layout.frames_dir("films")).has(a.video_id)
    again = submit_ingest("films", toy_videos[0]["path"], settings=embedded)
    assert not again.duplicate  # deleted videos are indexed again
    stop_embedded_runner()
    delete_collection(embedded, "films")
    assert shared_store(embedded).list_collections() == []
    assert not layout.videos_dir("films").exists() and not layout.frames_dir("films").exists()
    assert get_job_store(embedded).list("films") == [] and get_job(b.job_id, embedded) is None


def test_submit_refuses_metadata_the_stores_could_not_read_back_and_keeps_nothing(
    embedded: Settings, toy_videos: list[dict[str, Any]], tmp_path: Path
) -> None:
    create_collection(embedded, "films")
    upload = tmp_path / "upload.mp4"
    shutil.copyfile(toy_videos[0]["path"], upload)
    for metadata, rule in (({"x": float("nan")}, MetadataRule.NUMBER), ({"n": 2**64}, MetadataRule.INTEGER)):
        with pytest.raises(InvalidMetadata) as caught:
            submit_ingest("films", upload, metadata=metadata, move=True, settings=embedded)
        assert caught.value.rule is rule
    assert upload.exists()  # the caller keeps its file
    assert get_job_store(embedded).list("films") == []
    assert not DataLayout(embedded.data_dir).videos_dir("films").exists()


def test_metadata_at_the_depth_limit_is_indexed_and_read_back_after_a_restart(
    embedded: Settings, toy_videos: list[dict[str, Any]]
) -> None:
    create_collection(embedded, "films")
    deep: Any = "bottom"
    for _ in range(MAX_METADATA_DEPTH - 1):  # the metadata object is the first level
        deep = {"down": deep}
    metadata = {"deep": deep, "a.b": "dot", "n": 2**63 - 1}
    result = submit_ingest("films", toy_videos[0]["path"], metadata=metadata, settings=embedded)
    assert get_embedded_runner(embedded).join(timeout=120), "ingest did not finish in 120 s"
    job = get_job(result.job_id, embedded)
    assert job is not None and job.stage is JobStage.DONE, job
    stop_embedded_runner()
    close_shared_stores()  # a restart: the shard is opened again from its files
    store = shared_store(embedded)
    query = np.ones(store.get_collection("films").dim, dtype=np.float32)
    hits = store.search("films", query, 10, SearchFilter(metadata={"a.b": "dot"}))
    assert hits and all(hit.payload["metadata"] == metadata for hit in hits)
