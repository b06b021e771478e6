"""Re-indexing a collection with a new adapter: from the frame cache only, into a new version switched at once."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch
from ingest_helpers import decoded_but_not_indexed, eager_app, ingest_all, make_adapter
from typer.testing import CliRunner

from videoseek.adapter import AdaptedClip, load_adapter
from videoseek.cancel import TaskCancelled
from videoseek.cli.app import app
from videoseek.collection_lock import CollectionBusy, FileWriteLocks, WriteLocks
from videoseek.collections import create_collection, delete_video
from videoseek.context import PipelineContext
from videoseek.embedding import preprocess_frames
from videoseek.ingest import pipeline
from videoseek.ingest.pipeline import embed_and_index, read_clip_plan
from videoseek.jobs import Job
from videoseek.layout import DataLayout
from videoseek.reindex import ReindexError, ReindexProgress, reindex_collection, rollback_to_version
from videoseek.runtime.embedded import EmbeddedRuntime, embedded_context
from videoseek.settings import Settings
from videoseek.store import ClipStore, CollectionInfo, SearchFilter, point_id
from videoseek.versions import NoVersionToRestore, rollback_target
from videoseek.video import FrameCache, run_in_sandbox, sample_frames_sandboxed

NAME = "films"


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts every way the code could decode video: the pipeline's sandboxed sampler/probe and PyAV."""
    counts = {"sample": 0, "sandbox": 0, "av.open": 0}

    def counting(key: str, real: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            counts[key] += 1
            return real(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(pipeline, "sample_frames_sandboxed", counting("sample", sample_frames_sandboxed))
    monkeypatch.setattr(pipeline, "run_in_sandbox", counting("sandbox", run_in_sandbox))
    monkeypatch.setattr(av, "open", counting("av.open", av.open))
    return counts


def _expected_frame_vectors(settings: Settings, adapter_dir: Path, video_id: str) -> np.ndarray:
    """Frame vectors of a video's cached frames through the adapter's training-path model (not the bank)."""
    adapter = load_adapter(adapter_dir)
    adapted = AdaptedClip.from_spec(settings.model, adapter.config, init=adapter)
    _, frames = FrameCache(DataLayout(settings.data_dir).frames_dir(NAME)).get(video_id)
    with torch.no_grad():
        return adapted.encode_images(preprocess_frames(adapted.clip, frames)).numpy()


def _stored(
    store: ClipStore, settings: Settings, video_id: str
) -> dict[int, tuple[np.ndarray, dict[str, Any]]]:
    """clip index -> (stored frame vectors, payload) of one video, read from the live version."""
    plan = read_clip_plan(DataLayout(settings.data_dir), NAME, video_id)
    assert plan is not None
    ids = [point_id(video_id, c.index) for c in plan]
    frames = store.get_frames(NAME, ids)
    hits = store.search(
        NAME, np.ones(store.get_collection(NAME).dim, np.float32), 50, SearchFilter([video_id])
    )
    payloads = {h.clip_index: h.payload for h in hits}
    return {c.index: (frames[point_id(video_id, c.index)], payloads[c.index]) for c in plan}


def _assert_embedded_with(store: ClipStore, settings: Settings, adapter_dir: Path, video_id: str) -> None:
    """Every clip of the video holds exactly the adapter's frame vectors, and its pooled vector is their mean."""
    expected = _expected_frame_vectors(settings, adapter_dir, video_id)
    plan = read_clip_plan(DataLayout(settings.data_dir), NAME, video_id)
    assert plan is not None
    stored = _stored(store, settings, video_id)
    version = load_adapter(adapter_dir).version
    for clip in plan:
        frames, payload = stored[clip.index]
        # the store keeps frames in float16 (rounding error 2**-11 of the value)
        np.testing.assert_allclose(frames, expected[clip.frame_indices], rtol=1e-3, atol=1e-4)
        assert payload["adapter_version"] == version
        pooled = expected[clip.frame_indices].mean(axis=0)
        scores = {h.clip_index: h.score for h in store.search(NAME, pooled, 10, SearchFilter([video_id]))}
        assert scores[clip.index] > 1 - 1e-5 and scores[clip.index] >= max(scores.values()) - 1e-6


def test_reindex_switches_every_clip_to_the_new_adapter_without_decoding(
    embedded: Settings,
    runtime: EmbeddedRuntime,
    toy_videos: list[dict[str, Any]],
    tmp_path: Path,
    decodes: dict[str, int],
) -> None:
    ctx = runtime.context
    create_collection(ctx, NAME)
    jobs = ingest_all(runtime, NAME, [r["path"] for r in toy_videos[:2]])
    runtime.runner.stop()
    store = ctx.store
    before = {j.video_id: _stored(store, embedded, j.video_id) for j in jobs}
    points, old_physical = store.count(NAME), store.get_collection(NAME).physical
    adapter_dir = make_adapter(embedded, tmp_path / "adapter")
    assert decodes["sample"] == 2  # the counters see the ingest's decoding...
    decodes.update(dict.fromkeys(decodes, 0))  # ...and from here on only what the re-index does
    seen_while_running: list[str] = []

    def searches_still_see_the_old_version(progress: ReindexProgress) -> None:
        seen_while_running.append(progress.stage)
        if progress.stage == "done":
            return
        live = store.get_collection(NAME)
        assert (live.adapter_version, live.physical, live.points) == (None, old_physical, points)
        for job in jobs:
            for index, (frames, payload) in _stored(store, embedded, job.video_id).items():
                assert payload["adapter_version"] is None
                np.testing.assert_array_equal(frames, before[job.video_id][index][0])

    result = reindex_collection(ctx, NAME, adapter_dir, progress=searches_still_see_the_old_version)

    assert decodes == {"sample": 0, "sandbox": 0, "av.open": 0}
    assert "embedding" in seen_while_running and seen_while_running[-2:] == ["activating", "done"]
    version = load_adapter(adapter_dir).version
    info = store.get_collection(NAME)
    assert (info.adapter_version, info.points, info.videos) == (version, points, 2)
    assert info.physical == result.physical != old_physical
    assert (result.old_adapter_version, result.new_adapter_version) == (None, version)
    assert (result.videos, result.clips, result.missing, result.caught_up, result.removed) == (
        2,
        points,
        [],
        0,
        0,
    )
    assert load_adapter(DataLayout(embedded.data_dir).adapter_dir(version)).version == version  # installed
    for job in jobs:
        _assert_embedded_with(store, embedded, adapter_dir, job.video_id)
        after = _stored(store, embedded, job.video_id)
        for index, (frames, payload) in after.items():
            old_frames, old_payload = before[job.video_id][index]
            assert np.abs(frames - old_frames).max() > 1e-2  # the adapter changed the vectors
            assert {k: v for k, v in payload.items() if k != "adapter_version"} == {
                k: v for k, v in old_payload.items() if k != "adapter_version"
            }  # source, metadata, thumbnail kept


def test_a_missing_frame_cache_fails_with_the_video_named_unless_allowed(
    embedded: Settings, runtime: EmbeddedRuntime, toy_videos: list[dict[str, Any]], tmp_path: Path
) -> None:
    ctx = runtime.context
    create_collection(ctx, NAME)
    jobs = ingest_all(runtime, NAME, [r["path"] for r in toy_videos[:2]])
    runtime.runner.stop()
    store = ctx.store
    points, physical = store.count(NAME), store.get_collection(NAME).physical
    lost = jobs[0].video_id
    FrameCache(DataLayout(embedded.data_dir).frames_dir(NAME)).delete(lost)
    adapter_dir = make_adapter(embedded, tmp_path / "adapter")

    with pytest.raises(ReindexError, match=rf"1 of 2 videos .*{lost}.*--allow-missing"):
        reindex_collection(ctx, NAME, adapter_dir)
    info = store.get_collection(NAME)
    assert (info.adapter_version, info.physical, info.points) == (None, physical, points)

    result = reindex_collection(ctx, NAME, adapter_dir, allow_missing=True)
    assert result.missing == [lost] and result.videos == 1
    assert not store.has_video(NAME, lost) and store.count(NAME) == result.clips == jobs[1].clips
    assert store.get_collection(NAME).adapter_version == load_adapter(adapter_dir).version


@pytest.fixture
def two_videos_and_an_adapter(
    embedded: Settings, runtime: EmbeddedRuntime, toy_videos: list[dict[str, Any]], tmp_path: Path
) -> tuple[ClipStore, CollectionInfo, Path]:
    """A collection of two indexed videos (the runner stopped), its live version, and an adapter to switch to."""
    create_collection(runtime.context, NAME)
    ingest_all(runtime, NAME, [r["path"] for r in toy_videos[:2]])
    runtime.runner.stop()
    store = runtime.context.store
    live = store.get_collection(NAME)
    adapter_dir = make_adapter(embedded, tmp_path / "adapter")
    return store, live, adapter_dir


def test_a_failed_reindex_keeps_the_old_version_and_leaves_no_half_built_one(
    ctx: PipelineContext, two_videos_and_an_adapter: tuple[ClipStore, CollectionInfo, Path]
) -> None:
    store, live, adapter_dir = two_videos_and_an_adapter

    def disk_full(progress: ReindexProgress) -> None:
        if progress.stage == "embedding" and progress.clips:
            raise OSError("no space left on device")

    with pytest.raises(OSError, match="no space left"):
        reindex_collection(ctx, NAME, adapter_dir, progress=disk_full)
    after = store.get_collection(NAME)
    assert (after.physical, after.adapter_version, after.points) == (live.physical, None, live.points)
    # the half-built version was dropped: the next re-index gets the same version number, not the one after
    result = reindex_collection(ctx, NAME, adapter_dir)
    assert result.physical == f"vs__{NAME}__2"


@pytest.mark.parametrize("cancelled_at_check", [1, 2])  # before embedding / after it, just before the switch
def test_a_cancelled_reindex_keeps_the_old_version_and_leaves_no_half_built_one(
    ctx: PipelineContext,
    two_videos_and_an_adapter: tuple[ClipStore, CollectionInfo, Path],
    cancelled_at_check: int,
) -> None:
    store, live, adapter_dir = two_videos_and_an_adapter
    checks: list[str] = []

    def cancel() -> None:
        checks.append(store.get_collection(NAME).physical)
        if len(checks) == cancelled_at_check:
            raise TaskCancelled("cancelled by the test")

    with pytest.raises(TaskCancelled):
        reindex_collection(ctx, NAME, adapter_dir, cancel=cancel)
    assert checks == [live.physical] * cancelled_at_check  # never switched before a check
    after = store.get_collection(NAME)
    assert (after.physical, after.adapter_version, after.points) == (live.physical, None, live.points)
    assert reindex_collection(ctx, NAME, adapter_dir).physical == f"vs__{NAME}__2"  # nothing left over


def test_ingests_and_deletes_during_a_reindex_end_up_in_the_new_version(
    embedded: Settings, runtime: EmbeddedRuntime, toy_videos: list[dict[str, Any]], tmp_path: Path
) -> None:
    context = runtime.context
    create_collection(context, NAME)
    (first,) = ingest_all(runtime, NAME, [toy_videos[0]["path"]])
    in_flight = decoded_but_not_indexed(context, Path(toy_videos[2]["path"]))
    adapter_dir = make_adapter(embedded, tmp_path / "adapter")
    store = context.store
    added: list[Job] = []

    def meanwhile(progress: ReindexProgress) -> None:
        if progress.stage == "embedding" and not added:
            # The first video is in the new version already; the old one changes under the re-index.
            added.extend(ingest_all(runtime, NAME, [toy_videos[1]["path"]]))
            delete_video(context, NAME, first.video_id)

    result = reindex_collection(context, NAME, adapter_dir, progress=meanwhile)
    (second,) = added
    assert (result.caught_up, result.removed, result.videos) == (1, 1, 1)
    assert store.list_videos(NAME) == [second.video_id]
    _assert_embedded_with(store, embedded, adapter_dir, second.video_id)

    # An ingest that embedded with the old adapter and indexes after the switch embeds again, with the new one.
    embed_and_index(context, [in_flight])
    assert context.jobs.require(in_flight.job.job_id).stage == "done"
    _assert_embedded_with(store, embedded, adapter_dir, in_flight.job.video_id)
    assert store.count(NAME) == second.clips + in_flight.job.clips


def test_cli_reindexes_to_an_adapter_and_back_and_the_task_does_the_same(
    embedded: Settings, runtime: EmbeddedRuntime, toy_videos: list[dict[str, Any]], tmp_path: Path
) -> None:
    from worker.names import TASK_REINDEX

    create_collection(runtime.context, NAME)
    (job,) = ingest_all(runtime, NAME, [toy_videos[0]["path"]])
    runtime.close()  # the command opens the data dir's store in its own runtime
    adapter_dir = make_adapter(embedded, tmp_path / "adapter")
    version = load_adapter(adapter_dir).version
    runner = CliRunner()

    both = runner.invoke(app, ["reindex", "-c", NAME, "--adapter", str(adapter_dir), "--no-adapter"])
    assert both.exit_code == 2 and "exactly one of" in both.output
    unknown = runner.invoke(app, ["reindex", "-c", "nope", "--no-adapter"])
    assert unknown.exit_code == 1 and "does not exist" in unknown.output

    out = runner.invoke(app, ["reindex", "-c", NAME, "--adapter", str(adapter_dir), "--json"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout)
    assert (summary["old_adapter_version"], summary["new_adapter_version"]) == (None, version)
    assert (summary["videos"], summary["clips"], summary["missing"]) == (1, job.clips, [])
    assert summary["seconds"] >= 0

    back = runner.invoke(app, ["reindex", "-c", NAME, "--no-adapter"])
    assert back.exit_code == 0, back.output
    assert f"adapter {version[:12]} -> none" in back.stdout and "1 videos" in back.stdout
    context = embedded_context(embedded)
    assert context.store.get_collection(NAME).adapter_version is None

    # The Celery task (run eagerly here) re-indexes to an installed adapter version.
    done = eager_app(context).tasks[TASK_REINDEX].apply(args=[NAME, version]).get()
    assert (done["old_adapter_version"], done["new_adapter_version"], done["clips"]) == (
        None,
        version,
        job.clips,
    )
    store = context.store
    assert store.get_collection(NAME).adapter_version == version
    _assert_embedded_with(store, embedded, adapter_dir, job.video_id)
    context.close()


@pytest.mark.parametrize("backing", ["file", pytest.param("redis", marks=pytest.mark.redis)])
def test_collection_write_lock_admits_one_holder_at_a_time(
    backing: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    locks: WriteLocks
    if backing == "redis":
        from worker.redis_client import redis_client
        from worker.redis_locks import RedisWriteLocks

        client = redis_client(request.getfixturevalue("redis_url"), 5.0)
        locks = RedisWriteLocks(client, request.getfixturevalue("redis_prefix"))
    else:
        locks = FileWriteLocks(tmp_path / "locks")
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with locks.hold(NAME):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert held.wait(10)
        with (
            pytest.raises(CollectionBusy, match="retry later"),
            locks.hold(NAME, wait_s=0.2),
        ):
            pass
        with locks.hold("other", wait_s=0.2):  # per collection
            pass
    finally:
        release.set()
        thread.join(10)
    with locks.hold(NAME, wait_s=2.0):  # free again once released
        pass


@pytest.mark.redis
def test_cli_queues_the_reindex_on_the_train_queue_in_distributed_mode(
    embedded: Settings, redis_url: str, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis

    from videoseek.runtime.base import task_collection
    from videoseek.settings import get_settings
    from worker.admin_state import AdminState
    from worker.names import TASK_REINDEX
    from worker.redis_client import redis_client

    monkeypatch.setenv("VIDEOSEEK_REDIS_URL", redis_url)
    monkeypatch.setenv("VIDEOSEEK_WORKER__REDIS_PREFIX", redis_prefix)
    get_settings.cache_clear()
    context = embedded_context(get_settings())  # the embedded store the command then opens
    create_collection(context, NAME)
    context.close()

    out = CliRunner().invoke(app, ["reindex", "-c", NAME, "--no-adapter", "--json"])
    assert out.exit_code == 0, out.output
    queued = json.loads(out.stdout)
    assert queued["queued"] is True and queued["new_adapter_version"] is None
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    (message,) = [json.loads(m) for m in client.lrange(f"{redis_prefix}celery:train", 0, -1)]
    assert message["headers"]["task"] == TASK_REINDEX and message["headers"]["id"] == queued["task_id"]
    # Queued as the API queues it: a task id GET /tasks/{id} accepts, holding the collection's slot.
    assert task_collection(queued["task_id"]) == NAME
    admin = AdminState.on(redis_client(redis_url, 5.0, decode_responses=True), redis_prefix)
    assert admin.slots.holder(NAME) == queued["task_id"]
    busy = CliRunner().invoke(app, ["reindex", "-c", NAME, "--no-adapter"])
    assert busy.exit_code == 1 and f"busy with task {queued['task_id']}" in busy.stderr, busy.output
    assert client.llen(f"{redis_prefix}celery:train") == 1
    client.close()
    admin.close()


def test_a_rollback_puts_the_kept_version_back_to_the_clip_and_carries_over_what_changed_since(
    embedded: Settings,
    runtime: EmbeddedRuntime,
    toy_videos: list[dict[str, Any]],
    tmp_path: Path,
    decodes: dict[str, int],
) -> None:
    ctx = runtime.context
    create_collection(ctx, NAME)
    kept_video, dropped_video = ingest_all(runtime, NAME, [r["path"] for r in toy_videos[:2]])
    store = ctx.store
    plain = {v: _stored(store, embedded, v) for v in (kept_video.video_id, dropped_video.video_id)}
    plain_physical = store.get_collection(NAME).physical
    adapter_dir = make_adapter(embedded, tmp_path / "adapter")
    adapted = reindex_collection(ctx, NAME, adapter_dir)
    # Since the switch: one video more (embedded with the adapter), one video less.
    (added,) = ingest_all(runtime, NAME, [toy_videos[2]["path"]])
    delete_video(ctx, NAME, dropped_video.video_id)
    runtime.runner.stop()
    decodes.update(dict.fromkeys(decodes, 0))

    result = rollback_to_version(ctx, NAME, plain_physical)

    assert decodes == {"sample": 0, "sandbox": 0, "av.open": 0}
    info = store.get_collection(NAME)
    assert (info.physical, info.adapter_version) == (plain_physical, None)
    assert store.list_videos(NAME) == sorted([kept_video.video_id, added.video_id])
    assert (result.caught_up, result.removed, result.physical) == (1, 1, plain_physical)
    for index, (frames, payload) in _stored(store, embedded, kept_video.video_id).items():
        np.testing.assert_array_equal(frames, plain[kept_video.video_id][index][0])  # exactly as it served
        assert payload == plain[kept_video.video_id][index][1]
    assert {p["adapter_version"] for _, p in _stored(store, embedded, added.video_id).values()} == {None}
    # The version it replaced is kept in turn: the rollback itself can be undone.
    assert [(v.physical, v.live) for v in store.list_versions(NAME)] == [
        (plain_physical, True),
        (adapted.physical, False),
    ]
    rollback_to_version(ctx, NAME, adapted.physical)
    assert store.get_collection(NAME).adapter_version == adapted.new_adapter_version
    _assert_embedded_with(store, embedded, adapter_dir, kept_video.video_id)
    _assert_embedded_with(store, embedded, adapter_dir, added.video_id)


def test_a_rollback_to_a_version_that_is_not_kept_changes_nothing(
    embedded: Settings, runtime: EmbeddedRuntime, toy_videos: list[dict[str, Any]]
) -> None:
    ctx = runtime.context
    create_collection(ctx, NAME)
    ingest_all(runtime, NAME, [toy_videos[0]["path"]])
    runtime.runner.stop()
    live = ctx.store.get_collection(NAME)
    with pytest.raises(NoVersionToRestore, match="no earlier version"):
        rollback_target(ctx.store, NAME)
    for physical in (live.physical, f"vs__{NAME}__7"):
        with pytest.raises(NoVersionToRestore):
            rollback_to_version(ctx, NAME, physical)
    assert ctx.store.get_collection(NAME) == live


def test_the_celery_rollback_task_puts_the_kept_version_back(
    embedded: Settings, runtime: EmbeddedRuntime, toy_videos: list[dict[str, Any]], tmp_path: Path
) -> None:
    from worker.names import TASK_ROLLBACK

    ctx = runtime.context
    create_collection(ctx, NAME)
    ingest_all(runtime, NAME, [toy_videos[0]["path"]])
    plain = ctx.store.get_collection(NAME).physical
    reindex_collection(ctx, NAME, make_adapter(embedded, tmp_path / "adapter"))
    runtime.runner.stop()
    done = eager_app(ctx).tasks[TASK_ROLLBACK].apply(args=[NAME, plain]).get()
    assert (done["kind"], done["physical"], done["new_adapter_version"]) == ("rollback", plain, None)
    assert ctx.store.get_collection(NAME).physical == plain
