"""FrameCache, thumbnails and video ids: what re-embedding and the web page read back."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from videoseek.layout import InvalidName
from videoseek.video import FrameCache, FrameCacheMiss, video_id_for_file, write_thumbnail

VID = "ab" * 32


def smooth_frames(n: int = 5, h: int = 36, w: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    frames = np.stack([np.stack([x * 4 + i * 10, y * 6, (x + y) * 2], axis=-1) for i in range(n)])
    return np.clip(frames, 0, 255).astype(np.uint8)


def test_raw_roundtrip_is_exact(tmp_path: Path) -> None:
    cache = FrameCache(tmp_path, encoding="raw")
    frames, ts = smooth_frames(), np.array([0.0, 1.0, 2.0, 3.5, 4.0])
    cache.put(VID, ts, frames)
    got_ts, got_frames = cache.get(VID)
    np.testing.assert_array_equal(got_ts, ts)
    np.testing.assert_array_equal(got_frames, frames)


def test_jpeg_roundtrip_is_close_and_much_smaller(tmp_path: Path) -> None:
    frames, ts = smooth_frames(n=8), np.arange(8.0)
    jpeg, raw = FrameCache(tmp_path / "j"), FrameCache(tmp_path / "r", encoding="raw")
    jpeg.put(VID, ts, frames)
    raw.put(VID, ts, frames)
    got_ts, got_frames = jpeg.get(VID)
    np.testing.assert_array_equal(got_ts, ts)
    assert got_frames.shape == frames.shape and got_frames.dtype == np.uint8
    assert np.abs(got_frames.astype(int) - frames).mean() < 3
    assert jpeg.path_for(VID).stat().st_size < raw.path_for(VID).stat().st_size / 3


def test_has_delete_and_miss(tmp_path: Path) -> None:
    cache = FrameCache(tmp_path)
    assert not cache.has(VID)
    with pytest.raises(FrameCacheMiss):
        cache.get(VID)
    cache.put(VID, np.arange(2.0), smooth_frames(2))
    assert cache.has(VID)
    cache.delete(VID)
    assert not cache.has(VID)
    cache.delete(VID)  # deleting twice is fine


def test_put_replaces_atomically_and_leaves_no_temp_files(tmp_path: Path) -> None:
    cache = FrameCache(tmp_path)
    cache.put(VID, np.arange(5.0), smooth_frames(5))
    cache.put(VID, np.arange(2.0), smooth_frames(2))
    assert cache.get(VID)[1].shape[0] == 2
    assert [p.name for p in cache.path_for(VID).parent.iterdir()] == [cache.path_for(VID).name]


def test_failed_put_keeps_the_previous_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = FrameCache(tmp_path, encoding="raw")
    cache.put(VID, np.arange(3.0), smooth_frames(3))

    def disk_full(*_args: object, **_kwargs: object) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.raises(OSError, match="No space"):
        cache.put(VID, np.arange(5.0), smooth_frames(5))
    assert cache.get(VID)[1].shape[0] == 3
    assert len(list(cache.path_for(VID).parent.iterdir())) == 1


def test_empty_video_roundtrips(tmp_path: Path) -> None:
    cache = FrameCache(tmp_path)
    cache.put(VID, np.zeros(0), np.zeros((0, 36, 64, 3), np.uint8))
    ts, frames = cache.get(VID)
    assert ts.shape == (0,) and frames.shape == (0, 36, 64, 3)


@pytest.mark.parametrize("bad_id", ["../../etc/passwd", "ABCDEF0123456789", "abc", ""])
def test_ids_that_are_not_hex_digests_are_refused(tmp_path: Path, bad_id: str) -> None:
    with pytest.raises(InvalidName):
        FrameCache(tmp_path).put(bad_id, np.arange(1.0), smooth_frames(1))


def test_mismatched_inputs_are_refused(tmp_path: Path) -> None:
    cache = FrameCache(tmp_path)
    with pytest.raises(ValueError, match="timestamps"):
        cache.put(VID, np.arange(3.0), smooth_frames(2))
    with pytest.raises(ValueError, match="uint8"):
        cache.put(VID, np.arange(2.0), smooth_frames(2).astype(np.float32))


def test_thumbnail_is_a_jpeg_within_max_side(tmp_path: Path) -> None:
    frame = smooth_frames(1, h=360, w=640)[0]
    path = write_thumbnail(frame, tmp_path / "a" / "b" / "0.jpg", max_side=320)
    with Image.open(path) as image:
        assert image.format == "JPEG" and image.size == (320, 180)
    small = write_thumbnail(frame[:30, :40], tmp_path / "small.jpg", max_side=320)
    with Image.open(small) as image:
        assert image.size == (40, 30)  # never enlarged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "small.jpg"]


def test_video_id_is_the_sha256_of_the_bytes(tmp_path: Path) -> None:
    data = np.random.default_rng(5).bytes(3 * 1024 * 1024 + 17)
    path = tmp_path / "v.bin"
    path.write_bytes(data)
    assert video_id_for_file(path) == hashlib.sha256(data).hexdigest()
