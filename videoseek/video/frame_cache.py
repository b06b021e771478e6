"""Sampled frames kept on disk per video, so re-embedding (after an adapter or model change) never decodes
video again.

One file per video, ``<root>/<id[:2]>/<id>.frames.npz``: the timestamps plus either every frame as a JPEG
(the default: ~10x smaller than raw) or the raw uint8 array (``encoding="raw"``: lossless). Writes go to a
temporary file in the same directory and are renamed into place, so a reader sees the old file or the new
one, never half of one, and a crashed writer leaves no corrupt entry.

An entry records the ``ingest.sample_mode`` its frames were sampled in (entries written before there were modes
are ``exact``). A reader that decodes again on a miss (a redelivered ingest job) asks for its own mode and
gets a miss for the other, so frames of one mode never pass for another; re-indexing asks for none, because
it re-embeds a video's frames together with the clip plan made from those same frames.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from videoseek.layout import check_video_id
from videoseek.settings import SampleMode

Encoding = Literal["jpeg", "raw"]
_SUFFIX = ".frames.npz"


class FrameCacheMiss(KeyError):
    """No cached frames for this video id."""


class FrameCache:
    """Frames of videos by ``video_id`` (a hex digest, see :func:`video_id_for_file`)."""

    def __init__(self, root: Path, encoding: Encoding = "jpeg", jpeg_quality: int = 90) -> None:
        if encoding not in ("jpeg", "raw"):
            raise ValueError(f"encoding must be 'jpeg' or 'raw', got {encoding!r}")
        if not 1 <= jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in 1..100, got {jpeg_quality!r}")
        self.root = Path(root)
        self.encoding = encoding
        self.jpeg_quality = jpeg_quality

    def path_for(self, video_id: str) -> Path:
        check_video_id(video_id)
        return self.root / video_id[:2] / f"{video_id}{_SUFFIX}"

    def has(self, video_id: str) -> bool:
        return self.path_for(video_id).is_file()

    def put(
        self, video_id: str, timestamps: np.ndarray, frames: np.ndarray, sample_mode: SampleMode = "exact"
    ) -> None:
        """Store (replacing) the frames of ``video_id``: ``timestamps`` float [N], ``frames`` uint8 [N,H,W,3],
        sampled in ``sample_mode``."""
        timestamps = np.asarray(timestamps, dtype=np.float64)
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be uint8 [N, H, W, 3], got {frames.dtype} {frames.shape}")
        if timestamps.shape != (frames.shape[0],):
            raise ValueError(f"{frames.shape[0]} frames but timestamps of shape {timestamps.shape}")
        if not np.all(np.isfinite(timestamps)):
            raise ValueError("timestamps must be finite")
        arrays: dict[str, np.ndarray] = {
            "timestamps": timestamps,
            "shape": np.asarray(frames.shape, dtype=np.int64),
            "sample_mode": np.asarray(sample_mode),  # a unicode array: no pickling
        }
        if self.encoding == "raw":
            arrays["frames"] = frames
        else:
            arrays["jpeg"], arrays["offsets"] = self._encode_jpegs(frames)
        target = self.path_for(video_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{video_id}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(handle, allow_pickle=False, **arrays)
                handle.flush()
                os.fsync(handle.fileno())
            Path(tmp_name).replace(target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise

    def get(self, video_id: str, sample_mode: SampleMode | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(timestamps float64 [N], frames uint8 [N,H,W,3])``; ``FrameCacheMiss`` when not cached, or when
        ``sample_mode`` is given and the frames were sampled in another mode."""
        path = self.path_for(video_id)
        try:
            data = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise FrameCacheMiss(f"no cached frames for video {video_id}") from None
        with data:
            stored_mode = str(data["sample_mode"]) if "sample_mode" in data.files else "exact"
            if sample_mode is not None and stored_mode != sample_mode:
                raise FrameCacheMiss(
                    f"the cached frames of video {video_id} were sampled in {stored_mode} mode, not {sample_mode}"
                )
            timestamps = data["timestamps"]
            shape = tuple(int(x) for x in data["shape"])
            if "frames" in data.files:
                frames = data["frames"]
            else:
                frames = self._decode_jpegs(data["jpeg"], data["offsets"], shape)
        return timestamps, frames

    def delete(self, video_id: str) -> None:
        """Forget ``video_id``'s frames (no error if there were none)."""
        self.path_for(video_id).unlink(missing_ok=True)

    def _encode_jpegs(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        blobs: list[bytes] = []
        for frame in frames:
            buffer = io.BytesIO()
            Image.fromarray(frame, "RGB").save(buffer, format="JPEG", quality=self.jpeg_quality)
            blobs.append(buffer.getvalue())
        offsets = np.cumsum([0] + [len(b) for b in blobs], dtype=np.int64)
        return np.frombuffer(b"".join(blobs), dtype=np.uint8), offsets

    @staticmethod
    def _decode_jpegs(blob: np.ndarray, offsets: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        frames = np.empty(shape, dtype=np.uint8)
        raw = blob.tobytes()
        for i in range(shape[0]):
            with Image.open(io.BytesIO(raw[offsets[i] : offsets[i + 1]])) as image:
                frames[i] = np.asarray(image.convert("RGB"))
        return frames
