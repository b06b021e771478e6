"""Raw Annex-B H.264/H.265 elementary streams (.264/.h264/.265/.h265/.hevc): no container, no timestamps, no
duration. They are opened with the demuxer their name gives, timed by their own frame rate (the SPS timing,
else FFmpeg's 25 fps) and measured by their packets, so clips and limits work as for any other file."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from video_factory import (
    QUIET_X265,
    frame_index_of,
    remux_elementary_stream,
    with_mvc_extension_units,
    write_video,
)

from videoseek.settings import IngestSettings
from videoseek.video import NotMedia, TooLong, probe, sample_frames, sample_frames_sandboxed

LIMITS = IngestSettings()
CODECS = {"h264": ("libx264", {}), "hevc": ("libx265", QUIET_X265)}
SUFFIXES = {".h264": "h264", ".264": "h264", ".hevc": "hevc", ".h265": "hevc", ".265": "hevc"}


@pytest.fixture(scope="module")
def raw_streams(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """3 s at 10 fps (frames 0..29) of each codec as a raw stream, by demuxer name."""
    out = tmp_path_factory.mktemp("raw")
    return {
        fmt: write_video(out / f"ten_fps.{fmt}", codec=codec, n=30, fmt=fmt, codec_options=options)
        for fmt, (codec, options) in CODECS.items()
    }


def _named(raw_streams: dict[str, Path], tmp_path: Path, suffix: str) -> Path:
    path = tmp_path / f"stream{suffix}"
    shutil.copyfile(raw_streams[SUFFIXES[suffix]], path)
    return path


@pytest.mark.parametrize("suffix", sorted(SUFFIXES))
def test_raw_stream_is_probed_at_its_own_frame_rate_with_its_measured_length(
    raw_streams: dict[str, Path], tmp_path: Path, suffix: str
) -> None:
    info = probe(_named(raw_streams, tmp_path, suffix), LIMITS)
    assert info.container_format == info.codec == SUFFIXES[suffix]
    assert info.frame_rate == pytest.approx(10.0)  # the demuxer's own report says 25
    assert info.duration_s == pytest.approx(3.0)
    assert info.frame_count == 30


@pytest.mark.parametrize("fmt", sorted(CODECS))
def test_raw_stream_is_sampled_at_the_times_its_frame_rate_gives(
    raw_streams: dict[str, Path], fmt: str
) -> None:
    sampled = sample_frames_sandboxed(raw_streams[fmt], LIMITS)
    np.testing.assert_allclose(sampled.timestamps, [0.0, 1.0, 2.0], atol=1e-6)
    assert sampled.duration_s == pytest.approx(3.0)
    assert [frame_index_of(f) for f in sampled.frames] == [0, 10 % 16, 20 % 16]  # the frames shown then
    assert sampled.problems == []


def test_raw_stream_without_timing_info_plays_at_ffmpeg_default_25_fps(tmp_path: Path) -> None:
    """An SPS without VUI timing says nothing about time: 25 fps is FFmpeg's (and every player's) convention."""
    options = {"x265-params": QUIET_X265["x265-params"] + ":vui-timing-info=0"}
    path = write_video(tmp_path / "untimed.hevc", codec="libx265", n=50, fmt="hevc", codec_options=options)
    info = probe(path, LIMITS)
    assert (info.frame_rate, info.duration_s) == (pytest.approx(25.0), pytest.approx(2.0))
    sampled = sample_frames(path, LIMITS)
    np.testing.assert_allclose(sampled.timestamps, [0.0, 1.0], atol=1e-6)
    assert [frame_index_of(f) for f in sampled.frames] == [0, 25 % 16]


def test_h264_stream_that_content_probing_misses_is_read_by_its_name(
    raw_streams: dict[str, Path], tmp_path: Path
) -> None:
    """A stream with MVC extension units (a 3D stream's second view) is 'invalid data' to FFmpeg's content
    probe, even named .h264; opened as h264 its base view decodes. Unnamed, nothing says what it is."""
    mvc = with_mvc_extension_units(raw_streams["h264"], tmp_path / "3d.h264")
    sampled = sample_frames(mvc, LIMITS)
    assert [frame_index_of(f) for f in sampled.frames] == [0, 10 % 16, 20 % 16]
    assert sampled.info.duration_s == pytest.approx(0.0)  # what the headers say; probe() measures
    assert probe(mvc, LIMITS).duration_s == pytest.approx(3.0)
    unnamed = shutil.copyfile(mvc, tmp_path / "3d.bin")
    with pytest.raises(NotMedia):
        probe(unnamed, LIMITS)


@pytest.mark.parametrize(("source", "named"), [("mp4", "movie.h264"), ("ts", "capture.hevc")])
def test_container_named_like_a_raw_stream_is_still_read_as_its_container(
    tmp_path: Path, source: str, named: str
) -> None:
    """The name only counts for bytes that start like a raw stream: an MP4 or MPEG-TS keeps its timestamps."""
    real = write_video(tmp_path / f"real.{source}", n=30, fmt="mpegts" if source == "ts" else None)
    path = shutil.copyfile(real, tmp_path / named)
    info = probe(path, LIMITS)
    assert info.container_format == probe(real, LIMITS).container_format != "h264"
    assert info.duration_s == pytest.approx(3.0, abs=0.11)


def test_raw_stream_over_the_duration_limit_is_refused_before_decoding(raw_streams: dict[str, Path]) -> None:
    with pytest.raises(TooLong) as caught:
        probe(raw_streams["h264"], IngestSettings(max_duration_s=2.0))
    assert "at least" in caught.value.reason and "MAX_DURATION_S" in caught.value.reason


@pytest.mark.parametrize(
    ("name", "fmt"), [("mediabunny__hevc.ts", "hevc"), ("moviepy__chaplin.mp4", "h264")]
)  # real footage whose video starts at the file's time zero (a raw stream's clock starts at its first frame)
def test_stream_copied_out_of_a_real_file_samples_the_times_of_its_container(
    corpus_dir: Path, tmp_path: Path, name: str, fmt: str
) -> None:
    """``ffmpeg -c copy out.hevc`` of real footage: the same frames at the same times as from the container."""
    source = corpus_dir / name
    raw = remux_elementary_stream(source, tmp_path / f"copy.{fmt}", fmt)
    in_container, alone = sample_frames(source, LIMITS), sample_frames(raw, LIMITS)
    np.testing.assert_allclose(alone.timestamps, in_container.timestamps, atol=0.01)
    assert alone.duration_s == pytest.approx(in_container.duration_s, abs=0.05)
    np.testing.assert_array_equal(alone.frames, in_container.frames)
    assert probe(raw, LIMITS).frame_count == alone.decoded_frames
