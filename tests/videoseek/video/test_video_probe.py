"""probe(): describes real files and refuses, before decoding, what is not a video or is over the limits."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from video_factory import (
    patch_gif_screen,
    patch_mpeg1_sequence_header,
    write_audio_only,
)

from videoseek.settings import IngestSettings
from videoseek.video import (
    MediaRejected,
    NotMedia,
    NoVideoStream,
    TooLarge,
    TooLong,
    TooManyPixels,
    probe,
)
from videoseek.video.errors import REJECTION_TYPES, rejection

LIMITS = IngestSettings()


def test_probe_describes_an_h264_mp4(h264_mp4: Path) -> None:
    info = probe(h264_mp4, LIMITS)
    assert (info.width, info.height) == (64, 48)
    assert info.codec == "h264"
    assert info.frame_rate == pytest.approx(10.0)
    assert info.duration_s == pytest.approx(3.0, abs=0.11)
    assert info.rotation == 0
    assert info.has_audio is False
    assert info.pix_fmt == "yuv420p"
    assert info.size_bytes == h264_mp4.stat().st_size
    assert info.streams[info.video_stream_index].type == "video"


def test_probe_reports_audio_next_to_video(make_video) -> None:
    info = probe(make_video("with_audio.mkv", audio=True), LIMITS)
    assert info.has_audio is True
    assert {s.type for s in info.streams} == {"video", "audio"}
    assert info.streams[info.video_stream_index].type == "video"


def test_probe_reads_display_matrix_rotation(make_video) -> None:
    info = probe(make_video("rot90.mp4", rotation=90), LIMITS)
    assert info.rotation == 90
    assert (info.display_width, info.display_height) == (48, 64)


def test_empty_file_is_not_media(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(NotMedia) as caught:
        probe(empty, LIMITS)
    assert caught.value.code == "not_media"
    assert "empty" in caught.value.reason


def test_random_bytes_are_not_media(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(1234).bytes(64 * 1024))
    with pytest.raises(NotMedia) as caught:
        probe(junk, LIMITS)
    assert "not a video file" in caught.value.reason
    assert str(tmp_path) not in caught.value.reason  # server paths stay out of user-facing reasons


def test_audio_only_file_has_no_video_stream(tmp_path: Path) -> None:
    with pytest.raises(NoVideoStream) as caught:
        probe(write_audio_only(tmp_path / "sound.m4a"), LIMITS)
    assert caught.value.code == "no_video_stream"
    assert "audio" in caught.value.reason


@pytest.mark.parametrize(
    "text",
    [
        "ffconcat version 1.0\nfile '{video}'\n",
        "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile://{video}\n#EXT-X-ENDLIST\n",
    ],
    ids=["concat", "hls"],
)
def test_playlists_that_read_other_files_are_refused(tmp_path: Path, h264_mp4: Path, text: str) -> None:
    playlist = tmp_path / "list.m3u8"
    playlist.write_text(text.format(video=h264_mp4))
    with pytest.raises(NotMedia):
        probe(playlist, LIMITS)


def test_file_over_the_size_limit_is_refused_before_opening(h264_mp4: Path) -> None:
    with pytest.raises(TooLarge) as caught:
        probe(h264_mp4, IngestSettings(max_file_bytes=100))
    assert caught.value.code == "too_large"
    assert "VIDEOSEEK_INGEST__MAX_FILE_BYTES" in caught.value.reason


def test_video_over_the_duration_limit_is_refused(h264_mp4: Path) -> None:
    with pytest.raises(TooLong) as caught:
        probe(h264_mp4, IngestSettings(max_duration_s=1.0))
    assert caught.value.code == "too_long"


def test_frames_over_the_pixel_limit_are_refused(h264_mp4: Path) -> None:
    with pytest.raises(TooManyPixels):
        probe(h264_mp4, IngestSettings(max_pixels=64 * 48 - 1))


@pytest.fixture(scope="module")
def huge_headers(make_video, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real tiny files whose headers claim enormous frames."""
    out = tmp_path_factory.mktemp("huge")
    gif = make_video("tiny.gif", codec="gif", pix_fmt="rgb8")
    mpg = make_video("tiny.mpg", codec="mpeg1video", rate=25, fmt="mpeg")
    return {
        "gif_16000x16000": patch_gif_screen(gif, out / "huge.gif", 16000, 16000),
        "gif_65534x64": patch_gif_screen(gif, out / "wide.gif", 65534, 64),
        "mpeg1_4095x4095": patch_mpeg1_sequence_header(mpg, out / "huge.mpg", 4095, 4095),
    }


@pytest.mark.parametrize("name", ["gif_16000x16000", "gif_65534x64", "mpeg1_4095x4095"])
def test_huge_header_is_refused_as_too_many_pixels(huge_headers: dict[str, Path], name: str) -> None:
    with pytest.raises(TooManyPixels) as caught:
        probe(huge_headers[name], LIMITS)
    claimed = name.split("_")[1]
    assert claimed in caught.value.reason


_MEASURE = """
import json, resource, sys
from pathlib import Path
from videoseek.settings import IngestSettings
from videoseek.video.errors import REJECTION_TYPES, rejection
from videoseek.video import probe, MediaRejected
peaks = []
for name in sys.argv[1:]:
    try:
        probe(Path(name), IngestSettings())
        outcome = "ok"
    except MediaRejected as exc:
        outcome = exc.code
    peaks.append((outcome, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024))
print(json.dumps(peaks))
"""


def test_huge_header_is_refused_without_allocating_frames(
    huge_headers: dict[str, Path], h264_mp4: Path
) -> None:
    """A decoder allocating one 16000x16000 frame would need >= 384 MB; the peak must stay near baseline."""
    files = [h264_mp4, huge_headers["gif_16000x16000"], huge_headers["mpeg1_4095x4095"]]
    result = subprocess.run(
        [sys.executable, "-c", _MEASURE, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    (ok, baseline), (gif, gif_peak), (mpg, mpg_peak) = json.loads(result.stdout)
    assert (ok, gif, mpg) == ("ok", "too_many_pixels", "too_many_pixels")
    assert gif_peak - baseline < 64 * 1024**2
    assert mpg_peak - baseline < 64 * 1024**2


def test_rejection_codes_are_stable_and_rebuild_their_class() -> None:
    """The pipeline stores and reports these codes; renaming one is an API change."""
    assert set(REJECTION_TYPES) == {
        "not_media",
        "no_video_stream",
        "unsupported_codec",
        "encrypted",
        "too_large",
        "too_long",
        "too_many_pixels",
        "decode_failed",
        "timeout",
        "decoder_crashed",
    }
    for code, cls in REJECTION_TYPES.items():
        rebuilt = rejection(code, "why")
        assert type(rebuilt) is cls and rebuilt.code == code and str(rebuilt) == "why"
        assert isinstance(rebuilt, MediaRejected)


def test_concurrent_probes_each_see_their_own_ffmpeg_errors(
    huge_headers: dict[str, Path], h264_mp4: Path
) -> None:
    """The FFmpeg log capture that names refused frame sizes works when many threads open files at once."""
    jobs = [huge_headers["gif_16000x16000"], h264_mp4] * 12

    def outcome(path: Path) -> str:
        try:
            probe(path, LIMITS)
            return "ok"
        except MediaRejected as exc:
            return exc.code

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(outcome, jobs))
    assert results == ["too_many_pixels", "ok"] * 12
