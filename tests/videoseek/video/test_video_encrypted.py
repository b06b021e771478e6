"""Encrypted (DRM) video is refused before decoding with "encrypted content cannot be indexed": FFmpeg would
decode it without an error, to noise, and the noise would be indexed as if it were the video."""

from __future__ import annotations

from pathlib import Path

import av
import pytest
from video_factory import (
    CENC_KEY,
    frame_index_of,
    with_pssh_box,
    with_sample_entry,
    with_scheme_type,
    write_encrypted_mp4,
    write_matroska_with_encrypted_track,
)

from videoseek.settings import IngestSettings
from videoseek.video import EncryptedContent, probe, sample_frames, sample_frames_sandboxed
from videoseek.video.encryption import protected_mp4_tracks

LIMITS = IngestSettings()
REASON = "encrypted content cannot be indexed"


@pytest.fixture(scope="module")
def encrypted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("encrypted")
    cenc = write_encrypted_mp4(out / "cenc.mp4")
    return {
        "cenc": cenc,
        "cenc_fragmented": write_encrypted_mp4(out / "cenc_fragmented.mp4", fragmented=True),
        "cbcs": with_scheme_type(cenc, out / "cbcs.mp4", b"cbcs"),
        "undeclared": with_sample_entry(cenc, out / "undeclared.mp4", b"encv", b"avc1"),
        "matroska": write_matroska_with_encrypted_track(out / "encrypted.mkv"),
    }


@pytest.mark.parametrize("fragmented", [False, True])
def test_test_files_are_real_common_encryption_that_decrypts_with_its_key(
    encrypted: dict[str, Path], fragmented: bool
) -> None:
    """FFmpeg made them: with the key its demuxer gives back every source frame, without it not the video."""
    path = encrypted["cenc_fragmented" if fragmented else "cenc"]
    assert _decoded_indices(path, {"decryption_key": CENC_KEY}) == [i % 16 for i in range(30)]
    assert _decoded_indices(path, {}) != [i % 16 for i in range(30)]
    assert protected_mp4_tracks(path)[0].scheme == "cenc"


def _decoded_indices(path: Path, options: dict[str, str]) -> list[int]:
    """The source index of each frame that decodes (packets the decoder refuses are skipped)."""
    indices = []
    with av.open(str(path), options=options) as container:
        for packet in container.demux(video=0):
            try:
                indices += [frame_index_of(f.to_ndarray(format="rgb24")) for f in packet.decode()]
            except av.FFmpegError:
                continue
    return indices


@pytest.mark.parametrize(
    ("case", "named"),
    [
        ("cenc", "'cenc' scheme"),
        ("cenc_fragmented", "'cenc' scheme"),
        ("cbcs", "'cbcs' scheme"),
        ("matroska", "ContentEncryption"),
    ],
)
def test_encrypted_video_track_is_refused_before_decoding(
    encrypted: dict[str, Path], case: str, named: str
) -> None:
    with pytest.raises(EncryptedContent) as caught:
        probe(encrypted[case], LIMITS)
    assert caught.value.code == "encrypted"
    assert caught.value.reason.startswith(REASON) and named in caught.value.reason
    with pytest.raises(EncryptedContent):  # the decoder refuses it too, whoever calls it
        sample_frames(encrypted[case], LIMITS)


def test_encrypted_packets_are_refused_when_the_headers_do_not_say_so(encrypted: dict[str, Path]) -> None:
    """A sample entry not named as protected: FFmpeg still marks each packet encrypted, and that is enough."""
    path = encrypted["undeclared"]
    assert protected_mp4_tracks(path) == []
    for read in (probe, sample_frames_sandboxed):
        with pytest.raises(EncryptedContent) as caught:
            read(path, LIMITS)
        assert caught.value.reason.startswith(REASON)


@pytest.mark.parametrize("with_pssh", [False, True])
def test_clear_mp4_is_not_taken_for_encrypted(h264_mp4: Path, tmp_path: Path, with_pssh: bool) -> None:
    """DRM system data (a pssh box) next to clear tracks is not encryption: the file indexes."""
    path = with_pssh_box(h264_mp4, tmp_path / "pssh.mp4") if with_pssh else h264_mp4
    assert (b"pssh" in path.read_bytes()) is with_pssh
    assert protected_mp4_tracks(path) == []
    sampled = sample_frames(path, LIMITS)
    assert [frame_index_of(f) for f in sampled.frames] == [0, 10, 20 % 16]
    assert probe(path, LIMITS).duration_s == pytest.approx(3.0, abs=0.11)


def test_no_real_world_iso_file_of_the_corpus_is_taken_for_encrypted(corpus_dir: Path) -> None:
    iso_files = [p for p in sorted(corpus_dir.iterdir()) if p.suffix in {".mp4", ".mov", ".3gp", ".m4v"}]
    assert len(iso_files) > 10
    assert {p.name: protected_mp4_tracks(p) for p in iso_files if protected_mp4_tracks(p)} == {}
