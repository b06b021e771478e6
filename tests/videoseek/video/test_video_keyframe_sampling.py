"""ingest.sample_mode=keyframes: each tick takes a keyframe near it when there is one, else its exact frame."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from video_factory import frame_index_of

from videoseek.settings import IngestSettings, SettingsError, load_settings
from videoseek.video import FrameCache, FrameCacheMiss, sample_frames, sample_frames_sandboxed

EXACT = IngestSettings()
KEYFRAMES = IngestSettings(sample_mode="keyframes")  # default tolerance: one tick interval
HALF = IngestSettings(sample_mode="keyframes", keyframe_tolerance=0.5)

# 10 s at 10 fps with B-frames; the keyframe spacings the mode is for, and the two ends of the scale.
GOP_15 = {"n": 100, "codec_options": {"x264-params": "keyint=15:min-keyint=15:scenecut=0:bframes=2"}}
GOP_20 = {"n": 100, "codec_options": {"x264-params": "keyint=20:min-keyint=20:scenecut=0:bframes=2"}}
ALL_INTRA = {"n": 60, "codec_options": {"g": "1"}}
LONG_GOP = {"n": 100, "codec_options": {"x264-params": "keyint=250:scenecut=0:bframes=3"}}


def keyframe_times(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.time_base is not None
        packets = [p for p in container.demux(stream) if p.size and p.is_keyframe]
        return np.sort([float(p.pts * stream.time_base) for p in packets])


def distance_to_nearest_tick(timestamps: np.ndarray, fps: float) -> np.ndarray:
    return np.abs(timestamps - np.round(timestamps * fps) / fps)


@pytest.mark.parametrize("limits", [KEYFRAMES, HALF], ids=["tolerance_1", "tolerance_half"])
@pytest.mark.parametrize("fps", [1.0, 2.0])
def test_every_frame_is_within_the_tolerance_of_a_tick_and_decodes_to_its_own_picture(
    make_video, limits: IngestSettings, fps: float
) -> None:
    path = make_video("kf_gop15.mp4", **GOP_15)
    sampled = sample_frames(path, limits, fps=fps)
    exact = sample_frames(path, EXACT, fps=fps)
    tolerance_s = limits.keyframe_tolerance / fps
    assert np.all(distance_to_nearest_tick(sampled.timestamps, fps) <= tolerance_s + 1e-6)
    assert np.all(np.diff(sampled.timestamps) > 0)
    # Frames that are not the exact tick frames must be keyframes (that is where the saving comes from).
    substituted = sampled.timestamps[~np.isin(sampled.timestamps.round(6), exact.timestamps.round(6))]
    assert np.all(np.isin(substituted.round(6), keyframe_times(path).round(6)))
    # The pixels are the frame at that time (the pattern encodes the frame index), not a neighbour's.
    assert [frame_index_of(f) for f in sampled.frames] == [round(t * 10) % 16 for t in sampled.timestamps]
    assert sampled.decoded_frames <= exact.decoded_frames
    if (
        fps == 1.0
    ):  # keyframes every 1.5 s sit between 1 s ticks (at 2 fps they are on ticks: nothing to save)
        assert sampled.decoded_frames < exact.decoded_frames / 3
    assert sampled.problems == []


def test_keyframes_near_every_tick_mean_only_keyframes_are_decoded(make_video) -> None:
    path = make_video("kf_gop20.mp4", **GOP_20)  # a keyframe every 2 s: every tick is within 1 s of one
    sampled = sample_frames(path, KEYFRAMES, fps=1.0)
    keys = keyframe_times(path)
    np.testing.assert_allclose(sampled.timestamps, keys, atol=1e-6)
    assert sampled.decoded_frames == len(keys) == 5  # one packet per kept frame, nothing in between
    assert len(sample_frames(path, EXACT, fps=1.0)) == 10  # a keyframe nearest two ticks is kept once


def test_half_a_tick_of_tolerance_keeps_every_tick_on_two_second_gops(make_video) -> None:
    path = make_video("kf_gop20.mp4", **GOP_20)
    sampled = sample_frames(path, HALF, fps=1.0)
    exact = sample_frames(path, EXACT, fps=1.0)
    np.testing.assert_array_equal(sampled.timestamps, exact.timestamps)  # odd ticks are 1 s from a keyframe
    np.testing.assert_array_equal(sampled.frames, exact.frames)


@pytest.mark.parametrize("limits", [KEYFRAMES, HALF], ids=["tolerance_1", "tolerance_half"])
def test_on_an_all_intra_video_keyframes_mode_is_exact_mode(make_video, limits: IngestSettings) -> None:
    path = make_video("kf_intra.mp4", **ALL_INTRA)
    for fps in (1.0, 3.0):
        sampled, exact = sample_frames(path, limits, fps=fps), sample_frames(path, EXACT, fps=fps)
        np.testing.assert_array_equal(sampled.timestamps, exact.timestamps)
        np.testing.assert_array_equal(sampled.frames, exact.frames)
        assert sampled.decoded_frames == exact.decoded_frames == len(exact)


def test_on_a_long_gop_video_ticks_fall_back_to_their_exact_frames(make_video) -> None:
    path = make_video("kf_long.mp4", **LONG_GOP)  # one keyframe, at 0 s
    assert len(keyframe_times(path)) == 1
    sampled = sample_frames(path, KEYFRAMES, fps=1.0)
    exact = sample_frames(path, EXACT, fps=1.0)
    # The 1 s tick is within the tolerance of the keyframe at 0 s, but its exact frame is decoded anyway on
    # the way to the 2 s one, so it keeps its exact frame: no frame is lost for nothing.
    np.testing.assert_array_equal(sampled.timestamps, exact.timestamps)
    np.testing.assert_allclose(sampled.timestamps, np.arange(10.0), atol=1e-6)
    np.testing.assert_array_equal(sampled.frames, exact.frames)


def test_other_containers_sample_exactly(make_video) -> None:
    """Keyframes mode needs a planned decode (MP4/MOV, Matroska/WebM); MPEG-TS is decoded whole, exactly."""
    path = make_video("kf_gop20.ts", fmt="mpegts", **GOP_20)
    np.testing.assert_array_equal(
        sample_frames(path, KEYFRAMES, fps=1.0).timestamps, sample_frames(path, EXACT, fps=1.0).timestamps
    )


def test_the_sandboxed_sampler_follows_the_mode(make_video) -> None:
    path = make_video("kf_gop20.mp4", **GOP_20)
    limits = KEYFRAMES.model_copy(update={"decode_timeout_s": 60})
    inside = sample_frames_sandboxed(path, limits, fps=1.0, max_side=32)
    here = sample_frames(path, limits, fps=1.0, max_side=32)
    np.testing.assert_array_equal(inside.timestamps, here.timestamps)
    np.testing.assert_array_equal(inside.frames, here.frames)
    assert inside.decoded_frames == here.decoded_frames == 5


def test_sample_mode_setting_is_read_and_a_bad_value_names_the_choices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VIDEOSEEK_INGEST__SAMPLE_MODE", "keyframes")
    monkeypatch.setenv("VIDEOSEEK_INGEST__KEYFRAME_TOLERANCE", "0.5")
    settings = load_settings()
    assert (settings.ingest.sample_mode, settings.ingest.keyframe_tolerance) == ("keyframes", 0.5)
    assert IngestSettings().sample_mode == "exact"
    monkeypatch.setenv("VIDEOSEEK_INGEST__SAMPLE_MODE", "fast")
    with pytest.raises(SettingsError, match="VIDEOSEEK_INGEST__SAMPLE_MODE") as excinfo:
        load_settings()
    assert "'exact' or 'keyframes'" in str(excinfo.value)


@pytest.mark.parametrize("value", ["0", "1.5", "-1"])
def test_keyframe_tolerance_outside_zero_to_one_tick_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("VIDEOSEEK_INGEST__KEYFRAME_TOLERANCE", value)
    with pytest.raises(SettingsError, match="VIDEOSEEK_INGEST__KEYFRAME_TOLERANCE"):
        load_settings()


def test_the_frame_cache_never_serves_one_modes_frames_for_another(tmp_path: Path) -> None:
    cache = FrameCache(tmp_path, encoding="raw")
    video_id = "cd" * 32
    frames = np.zeros((2, 8, 8, 3), np.uint8)
    cache.put(video_id, np.array([0.0, 2.0]), frames, sample_mode="keyframes")
    with pytest.raises(FrameCacheMiss, match="keyframes"):
        cache.get(video_id, sample_mode="exact")
    np.testing.assert_array_equal(cache.get(video_id, sample_mode="keyframes")[0], [0.0, 2.0])
    # No mode asked (re-indexing re-embeds the frames its clip plan was made from): whatever is there.
    np.testing.assert_array_equal(cache.get(video_id)[0], [0.0, 2.0])
    cache.put(video_id, np.array([0.0, 1.0]), frames)  # the default is exact
    np.testing.assert_array_equal(cache.get(video_id, sample_mode="exact")[0], [0.0, 1.0])
    with pytest.raises(FrameCacheMiss):
        cache.get(video_id, sample_mode="keyframes")


def test_frame_cache_entries_from_before_modes_read_as_exact(tmp_path: Path) -> None:
    cache = FrameCache(tmp_path, encoding="raw")
    video_id = "ef" * 32
    path = cache.path_for(video_id)
    path.parent.mkdir(parents=True)
    frames = np.zeros((1, 8, 8, 3), np.uint8)
    np.savez(path, timestamps=np.array([0.0]), shape=np.asarray(frames.shape), frames=frames)
    assert cache.get(video_id, sample_mode="exact")[0].tolist() == [0.0]
    with pytest.raises(FrameCacheMiss):
        cache.get(video_id, sample_mode="keyframes")
