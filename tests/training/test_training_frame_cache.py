"""The frame cache: decode once, serve later epochs and runs from disk, never serve stale frames."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from training_helpers import write_manifest, write_video

from training.config import SamplingConfig, TrainConfig
from training.data import ClipDataset, ClipRecord, as_gallery_only, load_dataset
from training.frame_cache import FrameCache, FrameError, warm_dataset
from training.loop import train
from videoseek.cancel import TaskCancelled
from videoseek.clip import load_clip
from videoseek.model_spec import ModelSpec

SAMPLING = SamplingConfig(fps=1.0, max_frames=4, image_size=16)


def test_frames_are_sampled_at_fps_and_thinned_uniformly(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.mp4", 10.0)
    cache = FrameCache(tmp_path / "cache", SAMPLING)
    whole = cache.get(ClipRecord(video, "x"))
    assert whole.frames.shape == (4, 16, 16, 3) and whole.frames.dtype == np.uint8
    assert whole.timestamps.tolist() == pytest.approx([0.0, 3.0, 6.0, 9.0])  # 10 one-second samples -> 4
    window = cache.get(ClipRecord(video, "x", start_s=2.0, end_s=5.0))
    assert window.timestamps.tolist() == pytest.approx([2.0, 3.0, 4.0])


def test_second_epoch_and_second_run_never_decode(tmp_path: Path) -> None:
    records = [
        ClipRecord(write_video(tmp_path / f"{i}.mp4", 3.0, level=40 * i), f"clip {i}") for i in range(3)
    ]
    records.append(ClipRecord(records[0].video, "a window of clip 0", start_s=1.0, end_s=3.0))
    cache = FrameCache(tmp_path / "cache", SAMPLING)
    assert cache.warm(records) == {}
    assert cache.decodes == 3  # one decode per video, serving both windows of video 0
    first = [cache.get(r).frames for r in records]  # epoch 1
    second = [cache.get(r).frames for r in records]  # epoch 2
    assert cache.decodes == 3 and cache.hits == 8
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    later_run = FrameCache(tmp_path / "cache", SAMPLING)
    assert later_run.warm(records) == {} and [later_run.get(r).frames.shape for r in records]
    assert later_run.decodes == 0


def test_warm_reports_each_video_it_decodes_and_stops_where_the_hook_raises(tmp_path: Path) -> None:
    records = [ClipRecord(write_video(tmp_path / f"{i}.mp4", 2.0, level=40 * i), f"c{i}") for i in range(3)]
    seen: list[tuple[int, int]] = []

    def stop_after_two(done: int, total: int) -> None:
        seen.append((done, total))
        if done == 2:
            raise TaskCancelled("cancelled by the test")

    cache = FrameCache(tmp_path / "cache", SAMPLING)
    with pytest.raises(TaskCancelled):
        cache.warm(records, on_video=stop_after_two)
    assert seen == [(1, 3), (2, 3)] and cache.decodes == 2
    resumed: list[tuple[int, int]] = []
    assert cache.warm(records, on_video=lambda done, total: resumed.append((done, total))) == {}
    assert resumed == [(1, 1)] and cache.decodes == 3  # what was cached before the stop is kept


def test_a_changed_video_is_decoded_again(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.mp4", 3.0, level=0)
    record = ClipRecord(video, "x")
    cache = FrameCache(tmp_path / "cache", SAMPLING)
    before = cache.get(record).frames
    write_video(video, 3.0, level=200)  # same path, new contents
    after = cache.get(record).frames
    assert cache.decodes == 2
    assert not np.array_equal(before, after)


def test_a_touched_but_identical_video_is_not_decoded_again(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.mp4", 2.0)
    FrameCache(tmp_path / "cache", SAMPLING).get(ClipRecord(video, "x"))
    os.utime(video, ns=(1, 1))  # new stat signature, same bytes: re-hash, then hit
    cache = FrameCache(tmp_path / "cache", SAMPLING)
    cache.get(ClipRecord(video, "x"))
    assert cache.decodes == 0 and cache.hits == 1


def test_a_changed_sampling_setting_is_a_different_entry(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.mp4", 6.0)
    FrameCache(tmp_path / "cache", SAMPLING).get(ClipRecord(video, "x"))
    more = FrameCache(tmp_path / "cache", SamplingConfig(fps=1.0, max_frames=6, image_size=16))
    assert more.get(ClipRecord(video, "x")).frames.shape[0] == 6
    assert more.decodes == 1


def test_a_torn_entry_is_replaced_not_served(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.mp4", 2.0)
    cache = FrameCache(tmp_path / "cache", SAMPLING)
    cache.get(ClipRecord(video, "x"))
    (entry,) = (tmp_path / "cache" / "frames").rglob("*.npz")
    entry.write_bytes(b"garbage")
    assert cache.get(ClipRecord(video, "x")).frames.shape[0] == 2
    assert cache.decodes == 2


def test_undecodable_videos_stop_the_run_or_are_skipped_with_a_count(tmp_path: Path) -> None:
    write_video(tmp_path / "good.mp4", 2.0)
    (tmp_path / "junk.mp4").write_bytes(os.urandom(4096))
    manifest = write_manifest(
        tmp_path / "captions.jsonl",
        [{"video": "good.mp4", "caption": "fine"}, {"video": "junk.mp4", "caption": "not a video"}],
    )
    dataset = load_dataset(manifest)
    cache = FrameCache(tmp_path / "cache", SAMPLING)
    with pytest.raises(FrameError, match=r"1 clip\(s\) .* cannot be decoded.*junk.mp4.*--on-bad skip"):
        warm_dataset(dataset, cache, "error")
    kept = warm_dataset(dataset, cache, "skip")
    assert [r.caption for r in kept.records] == ["fine"]
    assert kept.summary()["skipped"] == 1 and "junk.mp4" in kept.skipped[0].where


def test_an_undecodable_gallery_only_clip_is_left_out_even_when_bad_entries_stop_the_run(
    tmp_path: Path,
) -> None:
    write_video(tmp_path / "good.mp4", 2.0)
    (tmp_path / "junk.mp4").write_bytes(os.urandom(4096))
    manifest = write_manifest(tmp_path / "captions.jsonl", [{"video": "good.mp4", "caption": "fine"}])
    given = load_dataset(manifest)
    with_distractor = ClipDataset(
        [*given.records, *as_gallery_only([ClipRecord(tmp_path / "junk.mp4", "")])], given.source
    )
    kept = warm_dataset(with_distractor, FrameCache(tmp_path / "cache", SAMPLING), "error")
    assert [r.caption for r in kept.records] == ["fine"]


def test_a_window_without_frames_names_the_video_span(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.mp4", 2.0)
    with pytest.raises(FrameError, match=r"no frame in \[30.0, 40.0\) s .* from 0.00 to 1.00 s"):
        FrameCache(tmp_path / "cache", SAMPLING).get(ClipRecord(video, "x", start_s=30.0, end_s=40.0))


def test_real_corpus_files_that_cannot_be_used_are_skipped(corpus_dir: Path, tmp_path: Path) -> None:
    names = ["imageio__cockatoo.mp4", "fulcrumfs__video161_audio_only.mp4", "mmaction2__test.avi"]
    rows = [
        {"video": str(corpus_dir / name), "caption": name} for name in names if (corpus_dir / name).exists()
    ]
    if len(rows) < 3:
        pytest.skip("corpus files missing")
    dataset = load_dataset(write_manifest(tmp_path / "captions.jsonl", rows))
    kept = warm_dataset(dataset, FrameCache(tmp_path / "cache", SamplingConfig(image_size=32)), "skip")
    assert [r.caption for r in kept.records] == [names[0], names[2]]
    assert "no video stream" in kept.skipped[0].reason


def test_training_epochs_after_the_first_decode_nothing(
    tiny_spec: ModelSpec, toy_b_manifest: Path, tmp_path: Path
) -> None:
    dataset = load_dataset(toy_b_manifest)
    clip = load_clip(tiny_spec, "cpu")
    cache = FrameCache(tmp_path / "cache", SamplingConfig(max_frames=4, image_size=clip.image_size))
    cfg = TrainConfig(method="text", epochs=2, batch_size=4, lr=1e-3, frames=4)
    result = train(clip, cfg, dataset, cache, log=lambda _: None)
    assert result.steps == 4
    assert cache.decodes == len(dataset.records)  # each video once, during the first epoch
    assert cache.hits == len(dataset.records)  # the second epoch: every clip from disk


def test_a_clip_cached_in_one_sample_mode_is_decoded_again_in_the_other(tmp_path: Path) -> None:
    from videoseek.settings import IngestSettings

    video = write_video(tmp_path / "v.mp4", 10.0)  # MPEG-4, 8 fps: keyframes between the ticks
    record = ClipRecord(video, "x")
    exact = FrameCache(tmp_path / "cache", SAMPLING, limits=IngestSettings())
    keyframes = FrameCache(tmp_path / "cache", SAMPLING, limits=IngestSettings(sample_mode="keyframes"))
    exact_frames = exact.get(record)
    keyframe_frames = keyframes.get(record)
    assert keyframes.decodes == 1 and keyframes.hits == 0  # not served the exact mode's entry
    assert keyframe_frames.timestamps.tolist() != exact_frames.timestamps.tolist()
    assert keyframes.get(record).timestamps.tolist() == keyframe_frames.timestamps.tolist()
    assert keyframes.hits == 1
    # Exact mode keeps the key it always had, so caches made before the modes existed are still used.
    assert FrameCache(tmp_path / "cache", SAMPLING).get(record).timestamps.tolist() == pytest.approx(
        exact_frames.timestamps.tolist()
    )
