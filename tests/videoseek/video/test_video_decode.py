"""sample_frames(): the right frames, upright, small, from many containers and from damaged files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from video_factory import (
    cut_transport_stream_head,
    frame_index_of,
    frame_pattern,
    mp4_edit_media_time,
    remux_with_edit_list,
)

from videoseek.settings import IngestSettings
from videoseek.video import DecodeFailed, NotMedia, sample_frames

LIMITS = IngestSettings()

# (file name, write_video kwargs): 30 frames at 10 fps unless said otherwise.
CONTAINERS = {
    "h264.mp4": {},
    "h264.mov": {},
    "h264.mkv": {},
    "vp9.webm": {"codec": "libvpx-vp9", "codec_options": {"deadline": "realtime", "cpu-used": "8"}},
    "vp8.webm": {"codec": "libvpx", "codec_options": {"deadline": "realtime", "cpu-used": "8"}},
    "mpeg4.avi": {"codec": "mpeg4", "codec_options": {"qscale": "2"}},
    "anim.gif": {"codec": "gif", "pix_fmt": "rgb8"},
    "hevc.mkv": {"codec": "libx265", "codec_options": {"x265-params": "log-level=none"}},
}


def expected_ticks(times: list[float], fps: float) -> list[float]:
    """Reference rule, written independently: for each tick k/fps the first frame at or after it, once."""
    chosen: list[float] = []
    for k in range(math.ceil(max(times) * fps) + 1):
        later = [t for t in times if t >= k / fps - 1e-9]
        if later and later[0] not in chosen:
            chosen.append(later[0])
    return chosen


@pytest.mark.parametrize("name", sorted(CONTAINERS))
def test_each_container_yields_the_first_frame_of_each_second(make_video, name: str) -> None:
    sampled = sample_frames(make_video(name, **CONTAINERS[name]), LIMITS, fps=1.0)
    assert sampled.frames.dtype == np.uint8 and sampled.frames.shape == (3, 48, 64, 3)
    np.testing.assert_allclose(sampled.timestamps, [0.0, 1.0, 2.0], atol=1e-3)
    assert [frame_index_of(f) for f in sampled.frames] == [0, 10 % 16, 20 % 16]
    assert 3 <= sampled.decoded_frames <= 30
    assert sampled.duration_s == pytest.approx(3.0, abs=0.11)
    assert sampled.problems == []


def test_sampling_rate_follows_fps_argument(h264_mp4: Path) -> None:
    sampled = sample_frames(h264_mp4, LIMITS, fps=2.0)
    np.testing.assert_allclose(sampled.timestamps, np.arange(6) * 0.5, atol=1e-3)
    assert [frame_index_of(f) for f in sampled.frames] == [i * 5 % 16 for i in range(6)]


def test_default_rate_comes_from_settings(h264_mp4: Path) -> None:
    sampled = sample_frames(h264_mp4, IngestSettings(sample_fps=5.0))
    assert len(sampled) == 15


def test_frames_are_colours_not_bgr(h264_mp4: Path) -> None:
    frame = sample_frames(h264_mp4, LIMITS).frames[0]
    red_half, blue_half = frame[40:, 4:28].mean(axis=(0, 1)), frame[40:, 36:60].mean(axis=(0, 1))
    assert red_half[0] > 180 > red_half[2]
    assert blue_half[2] > 180 > blue_half[0]


def test_frames_are_resized_to_max_side_keeping_aspect(make_video) -> None:
    path = make_video("wide.mp4", size=(320, 120), n=10)
    sampled = sample_frames(path, LIMITS, max_side=160)
    assert sampled.frames.shape[1:] == (60, 160, 3)
    assert sample_frames(path, LIMITS, max_side=1000).frames.shape[1:] == (120, 320, 3)  # never upscaled


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotated_video_comes_out_upright(make_video, degrees: int) -> None:
    path = make_video(f"rot{degrees}.mp4", rotation=degrees)
    sampled = sample_frames(path, LIMITS)
    # The display matrix says "turn counter-clockwise by degrees": np.rot90 turns counter-clockwise too.
    expected = np.rot90(frame_pattern(0), k=degrees // 90)
    assert sampled.frames.shape[1:] == expected.shape
    assert np.abs(sampled.frames[0].astype(int) - expected).mean() < 12
    assert sampled.info.rotation == degrees


def test_variable_frame_rate_is_sampled_by_timestamp(make_video) -> None:
    times = [0.0, 0.1, 0.15, 0.9, 1.0, 1.05, 2.6, 2.7, 4.2, 4.25, 4.3, 5.5]
    path = make_video("vfr.mkv", n=len(times), times=times)
    sampled = sample_frames(path, LIMITS, fps=1.0)
    np.testing.assert_allclose(sampled.timestamps, expected_ticks(times, 1.0), atol=1e-3)
    assert [frame_index_of(f) for f in sampled.frames] == [times.index(t) for t in expected_ticks(times, 1.0)]


def test_non_zero_start_time_counts_from_the_start_of_the_file(make_video) -> None:
    times = [2.0 + i * 0.1 for i in range(30)]
    sampled = sample_frames(make_video("late_start.mkv", n=30, times=times), LIMITS)
    np.testing.assert_allclose(sampled.timestamps, [0.0, 1.0, 2.0], atol=1e-3)
    assert [frame_index_of(f) for f in sampled.frames] == [0, 10, 4]


def test_single_frame_video_gives_one_frame(make_video) -> None:
    sampled = sample_frames(make_video("one.mp4", n=1), LIMITS)
    assert len(sampled) == 1 and sampled.timestamps[0] == 0.0


def test_truncated_file_keeps_what_decoded_and_says_so(make_video, tmp_path: Path) -> None:
    source = make_video("long_faststart.mp4", n=80, container_options={"movflags": "faststart"})
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    sampled = sample_frames(cut, LIMITS)
    assert 1 <= len(sampled) < 8
    assert sampled.duration_s < 6.0
    assert any("truncated" in p for p in sampled.problems)


def test_truncated_mp4_without_its_index_is_not_media(make_video, tmp_path: Path) -> None:
    source = make_video("long_plain.mp4", n=80)  # moov written at the end: cutting loses it
    cut = tmp_path / "cut_plain.mp4"
    cut.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    with pytest.raises(NotMedia):
        sample_frames(cut, LIMITS)


def test_truncated_matroska_keeps_what_decoded(make_video, tmp_path: Path) -> None:
    source = make_video("long.mkv", n=80)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    sampled = sample_frames(cut, LIMITS)
    assert 1 <= len(sampled) < 8
    assert sampled.problems


def test_corrupt_packets_are_skipped_and_recorded(make_video, tmp_path: Path) -> None:
    source = make_video("gop.mkv", n=60, codec_options={"g": "10", "bf": "0"})
    data = bytearray(source.read_bytes())
    rng = np.random.default_rng(7)
    middle = slice(len(data) * 2 // 5, len(data) * 3 // 5)
    data[middle] = rng.integers(0, 256, middle.stop - middle.start, dtype=np.uint8).tobytes()
    damaged = tmp_path / "damaged.mkv"
    damaged.write_bytes(bytes(data))
    sampled = sample_frames(damaged, LIMITS)
    assert len(sampled) >= 2
    assert sampled.timestamps[0] == 0.0 and sampled.timestamps[-1] >= 5.0  # both sides of the damage
    assert any("no frames in" in p for p in sampled.problems)


def test_file_where_nothing_decodes_is_decode_failed(make_video, tmp_path: Path) -> None:
    source = make_video("garbage_payload.mp4", container_options={"movflags": "faststart"})
    data = bytearray(source.read_bytes())
    start = data.find(b"mdat") + 4
    data[start:] = np.random.default_rng(3).integers(0, 256, len(data) - start, dtype=np.uint8).tobytes()
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(bytes(data))
    with pytest.raises(DecodeFailed) as caught:
        sample_frames(garbage, LIMITS)
    assert caught.value.code == "decode_failed"


def test_bad_arguments_are_value_errors(h264_mp4: Path) -> None:
    with pytest.raises(ValueError, match="fps"):
        sample_frames(h264_mp4, LIMITS, fps=0.0)
    with pytest.raises(ValueError, match="max_side"):
        sample_frames(h264_mp4, LIMITS, max_side=0)


GOP_VARIANTS = {
    "bframes_g10.mp4": {"codec_options": {"g": "10", "bf": "3"}},
    "open_gop.mkv": {"codec_options": {"x264-params": "open-gop=1:keyint=15:min-keyint=15:bframes=3"}},
    "p_only_g5.mov": {"codec_options": {"g": "5", "bf": "0"}},
    "vp9_g10.webm": {
        "codec": "libvpx-vp9",
        "codec_options": {"g": "10", "deadline": "realtime", "cpu-used": "8"},
    },
    "hevc_g12.mp4": {
        "codec": "libx265",
        "codec_options": {"x265-params": "log-level=none:keyint=12:bframes=4"},
    },
    "vfr_g8.mkv": {
        "codec_options": {"g": "8"},
        "times": [0.0, 0.05, 0.3, 0.95, 1.0, 1.7, 2.05, 2.2, 3.9, 4.0, 4.01, 4.9, 6.2, 6.25, 7.0, 7.9],
        "n": 16,
    },
}


@pytest.mark.parametrize("name", sorted(GOP_VARIANTS))
@pytest.mark.parametrize("fps", [1.0, 3.0])
def test_skipping_unneeded_packets_keeps_exactly_the_same_frames(make_video, name: str, fps: float) -> None:
    kwargs = {"n": 80, **GOP_VARIANTS[name]}
    path = make_video(name, **kwargs)
    fast = sample_frames(path, LIMITS, fps=fps)
    full = sample_frames(path, LIMITS, fps=fps, skip_unneeded=False)
    np.testing.assert_array_equal(fast.timestamps, full.timestamps)
    np.testing.assert_array_equal(fast.frames, full.frames)
    assert fast.duration_s == pytest.approx(full.duration_s)
    assert fast.problems == full.problems
    assert fast.decoded_frames <= full.decoded_frames
    if fps == 1.0:  # most frames are not sampled: the plan was followed, not abandoned for a full decode
        assert fast.decoded_frames < full.decoded_frames


def test_short_gops_let_most_frames_go_undecoded(make_video) -> None:
    gop = {"x264-params": "keyint=10:min-keyint=10:scenecut=0:bframes=2"}
    path = make_video("g10_long.mp4", n=100, codec_options=gop)
    fast = sample_frames(path, LIMITS, fps=1.0)
    full = sample_frames(path, LIMITS, fps=1.0, skip_unneeded=False)
    assert full.decoded_frames == 100
    assert fast.decoded_frames <= 20  # the keyframe that starts each second is the sampled frame itself
    assert len(fast) == len(full) == 10


def test_edit_list_that_cuts_the_start_plays_from_the_cut_without_problems(
    make_video, tmp_path: Path
) -> None:
    source = make_video("gop30_9s.mp4", n=90, codec_options={"g": "30", "bf": "2"})
    edited = remux_with_edit_list(source, tmp_path / "edited.mp4", cut_s=1.5)
    media_time, timescale = mp4_edit_media_time(edited)
    assert media_time / timescale >= 1.5  # the file keeps the GOP head; the edit list hides it
    for skip in (True, False):
        sampled = sample_frames(edited, LIMITS, fps=1.0, skip_unneeded=skip)
        np.testing.assert_allclose(sampled.timestamps, np.arange(8), atol=1e-3)
        # Time zero shows source frame 15 (1.5 s in), then one frame per second after it.
        assert [frame_index_of(f) for f in sampled.frames] == [(15 + 10 * k) % 16 for k in range(8)]
        assert sampled.problems == []  # hidden on purpose: neither lost nor truncated
        assert sampled.duration_s == pytest.approx(7.5, abs=0.11)


def test_stream_starting_mid_gop_keeps_what_decodes_and_reports_the_lost_opening(
    make_video, tmp_path: Path
) -> None:
    source = make_video(
        "gop40.ts", n=90, fmt="mpegts", codec_options={"g": "40", "bf": "2", "x264-params": "scenecut=0"}
    )
    cut = cut_transport_stream_head(source, tmp_path / "cut.ts", 0.2)
    sampled = sample_frames(cut, LIMITS, fps=1.0)
    # The first keyframe left is source frame 40; everything before it cannot be decoded.
    assert frame_index_of(sampled.frames[0]) == 40 % 16
    assert sampled.timestamps[0] > 1.0 and len(sampled) >= 4
    assert any("opening" in p and "without a keyframe" in p for p in sampled.problems), sampled.problems


def test_a_stream_that_starts_on_a_keyframe_has_no_lost_opening(make_video) -> None:
    sampled = sample_frames(make_video("gop40_whole.ts", n=30, fmt="mpegts"), LIMITS, fps=1.0)
    assert sampled.timestamps[0] == 0.0 and sampled.problems == []
