"""Every file of the shared real-world corpus ends as sampled frames or a MediaRejected, never a crash or hang.

Expectations come from MANIFEST.tsv's ``observed_by_pyav`` column (what plain PyAV saw): files PyAV could
not open must be ``not_media``, files without video ``no_video_stream``, headers over the default pixel
limits ``too_many_pixels``, files PyAV decoded frames from must give frames here, rotated ones upright.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest

from videoseek.settings import IngestSettings
from videoseek.video import MediaRejected, sample_frames, sample_frames_sandboxed

CORPUS = Path(__file__).resolve().parents[3].parent / "shared" / "corpus"  # ../shared beside the checkout
LIMITS = IngestSettings(decode_timeout_s=60)
KNOWN_CODES = {"not_media", "no_video_stream", "unsupported_codec", "too_large", "too_long"} | {
    "too_many_pixels",
    "decode_failed",
    "timeout",
    "decoder_crashed",
}
# MANIFEST.tsv columns (0-based) used here.
NAME, FRAMES_DECODED, OBSERVED = 0, 18, 20


def manifest_rows() -> list[list[str]]:
    manifest = CORPUS / "MANIFEST.tsv"
    if not manifest.is_file():
        return []
    with manifest.open(newline="") as handle:
        return [row for row in csv.reader(handle, delimiter="\t") if row and row[0]]


def expected_outcome(row: list[str]) -> str:
    observed = row[OBSERVED]
    if "open() FAILS" in observed or "OPEN FAILED" in row:
        return "not_media"
    if "NO video stream" in observed:
        return "no_video_stream"
    huge = re.search(r"HUGE (\d+)x(\d+)", observed)
    if huge:
        width, height = int(huge.group(1)), int(huge.group(2))
        if width * height > LIMITS.max_pixels or max(width, height) > LIMITS.max_side_px:
            return "too_many_pixels"
    if int(row[FRAMES_DECODED] or 0) > 0:
        return "frames"
    return "anything"


ROWS = manifest_rows()


@pytest.mark.parametrize("row", ROWS or [None], ids=[r[NAME] for r in ROWS] or ["corpus-absent"])
def test_corpus_file_gives_frames_or_a_reasoned_rejection(corpus_dir: Path, row: list[str] | None) -> None:
    assert row is not None, "MANIFEST.tsv is missing from the corpus"
    expected = expected_outcome(row)
    try:
        sampled = sample_frames_sandboxed(corpus_dir / row[NAME], LIMITS)
    except MediaRejected as exc:
        assert exc.code in KNOWN_CODES and exc.reason
        assert expected in (exc.code, "anything"), f"expected {expected}, got {exc.code}: {exc.reason}"
        return
    assert expected in ("frames", "anything"), f"expected {expected}, got {len(sampled)} frames"
    n, height, width, channels = sampled.frames.shape
    assert n >= 1 and channels == 3 and sampled.frames.dtype == np.uint8
    assert max(height, width) <= 256
    assert sampled.timestamps.shape == (n,) and np.all(np.diff(sampled.timestamps) > 0)
    assert sampled.timestamps[0] >= 0 and sampled.duration_s > sampled.timestamps[-1]
    assert not sampled.info.streams[sampled.info.video_stream_index].attached_pic
    if "single decoded frame" in row[OBSERVED]:
        assert n == 1
    if "frame.rotation=[-90]" in row[OBSERVED]:  # stored landscape, shown portrait
        assert sampled.info.rotation == 270 and height > width


PLANNED = [r for r in ROWS if Path(r[NAME]).suffix in {".mp4", ".mov", ".mkv", ".webm", ".3gp"}]


def outcome(path: Path, skip_unneeded: bool) -> object:
    try:
        return sample_frames(path, LIMITS, skip_unneeded=skip_unneeded)
    except MediaRejected as exc:
        return exc.code


@pytest.mark.parametrize("row", PLANNED or [None], ids=[r[NAME] for r in PLANNED] or ["corpus-absent"])
def test_corpus_planned_decode_matches_full_decode(corpus_dir: Path, row: list[str] | None) -> None:
    """Decoding only the needed packets of real MP4/MOV/MKV/WebM files keeps exactly the same frames."""
    assert row is not None, "MANIFEST.tsv is missing from the corpus"
    fast, full = outcome(corpus_dir / row[NAME], True), outcome(corpus_dir / row[NAME], False)
    if isinstance(full, str) or isinstance(fast, str):
        assert fast == full
        return
    np.testing.assert_array_equal(fast.timestamps, full.timestamps)
    np.testing.assert_array_equal(fast.frames, full.frames)
    assert fast.decoded_frames <= full.decoded_frames
