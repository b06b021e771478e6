"""Frames decoded once, kept on disk, so later epochs and later runs never decode again.

Decoding is ``videoseek.video.sample_frames`` (the sampler ingest uses, with its limits and its handling
of odd files): one frame per 1/fps second, then at most ``max_frames`` of a clip's window, uniformly spaced.
One decode of a video serves every window of it that a dataset names.

An entry is keyed by the file's content (sha256) plus every sampling setting plus the clip window, so a changed
video or a changed setting is never served stale. Hashing a large file on every lookup would cost more than
reading the frames, so the content hash is remembered per path with the file's stat signature (size, mtime,
ctime, inode); any write to the file changes that signature and forces a re-hash.

Entries hold frames already resized (shorter side to the model's image size, bicubic) and centre-cropped, as
uint8, exactly what open_clip's eval transform does; normalising is a cheap tensor op done per batch.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from training.config import OnBad, SamplingConfig
from training.data import ClipDataset, ClipKey, ClipRecord
from videoseek.clip import sha256_file
from videoseek.settings import IngestSettings
from videoseek.video.decode import sample_frames
from videoseek.video.errors import MediaRejected

CACHE_FORMAT = 1  # bump when the stored bytes change meaning; old entries are then simply never looked up
# Frames are decoded at up to this multiple of the model's image size on the longer side, then resized with
# CLIP's own bicubic rule: the shorter side keeps at least the model's resolution for aspect ratios up to 2:1.
_DECODE_SIDE_FACTOR = 2


VideoHook = Callable[[int, int], None]  # (videos decoded, videos to decode) during a warm-up


class FrameError(RuntimeError):
    """A clip's frames could not be decoded; the message names the file and the reason."""


@dataclass(frozen=True)
class ClipFrames:
    """Frames of one clip: ``frames`` uint8 [N, S, S, 3] (N >= 1) and their times in seconds."""

    frames: np.ndarray
    timestamps: np.ndarray


@dataclass(frozen=True)
class DecodedVideo:
    """Every 1/fps frame of a whole video (any size), before windows are cut and frames cropped."""

    frames: np.ndarray
    timestamps: np.ndarray


VideoDecoder = Callable[[Path, SamplingConfig], DecodedVideo]


def decode_video(path: Path, sampling: SamplingConfig, limits: IngestSettings | None = None) -> DecodedVideo:
    """One frame per 1/fps second of the whole video, through the ingest sampler and its limits."""
    try:
        sampled = sample_frames(
            path,
            limits or IngestSettings(),
            fps=sampling.fps,
            max_side=sampling.image_size * _DECODE_SIDE_FACTOR,
        )
    except MediaRejected as exc:
        raise FrameError(f"{path}: {exc}") from exc
    return DecodedVideo(sampled.frames, sampled.timestamps)


def cut_window(
    video: DecodedVideo, sampling: SamplingConfig, start_s: float | None, end_s: float | None, where: Path
) -> ClipFrames:
    """The frames in [start_s, end_s), thinned uniformly to ``max_frames``, resized and centre-cropped."""
    times = video.timestamps
    inside = np.ones(times.shape, dtype=bool)
    if start_s is not None:
        inside &= times >= start_s - 1e-6
    if end_s is not None:
        inside &= times < end_s
    index = np.flatnonzero(inside)
    if index.size == 0:
        raise FrameError(
            f"{where}: no frame in [{start_s or 0.0}, {end_s if end_s is not None else 'end'}) s "
            f"(the video has frames from {times[0]:.2f} to {times[-1]:.2f} s)"
        )
    if index.size > sampling.max_frames:
        index = index[np.linspace(0, index.size - 1, sampling.max_frames).round().astype(int)]
    frames = np.stack([_resize_crop(Image.fromarray(video.frames[i]), sampling.image_size) for i in index])
    return ClipFrames(frames, times[index].astype(np.float64))


def _resize_crop(image: Image.Image, size: int) -> np.ndarray:
    """Shorter side to ``size`` (bicubic), then centre crop: what open_clip's eval preprocessing does."""
    image = image.convert("RGB")
    width, height = image.size
    # The same rounding as torchvision's Resize(int) + CenterCrop, so cached frames match open_clip's transform.
    if width <= height:
        new_w, new_h = size, max(size, int(size * height / width))
    else:
        new_w, new_h = max(size, int(size * width / height)), size
    image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    left, top = round((new_w - size) / 2.0), round((new_h - size) / 2.0)
    return np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)


class FrameCache:
    """Disk cache of sampled frames under ``root``; ``decodes`` counts the videos actually decoded."""

    def __init__(
        self,
        root: Path,
        sampling: SamplingConfig,
        *,
        limits: IngestSettings | None = None,
        decoder: VideoDecoder | None = None,
    ) -> None:
        self.root = Path(root)
        self.sampling = sampling
        self._decoder = decoder or partial(decode_video, limits=limits)
        # The sample mode changes which frames come out (ingest.sample_mode), so it is part of the key; left out
        # for exact, so entries made before there were modes still match.
        chosen = limits or IngestSettings()
        self._sampling_key: dict[str, object] = {}
        if chosen.sample_mode != "exact":
            self._sampling_key = {"mode": chosen.sample_mode, "tolerance": chosen.keyframe_tolerance}
        self._content: dict[str, tuple[tuple[int, int, int, int], str]] = {}
        self.decodes = 0
        self.hits = 0

    def get(self, record: ClipRecord) -> ClipFrames:
        """The clip's frames, decoding (and storing) them only if no entry matches the file and settings."""
        entry = self._entry_path(record)
        stored = _load(entry)
        if stored is not None:
            self.hits += 1
            return stored
        return self._decode_and_store(record.video, [record])[record.clip_key]

    def warm(
        self,
        clips: Sequence[ClipRecord],
        *,
        desc: str = "caching frames",
        on_video: VideoHook | None = None,
    ) -> dict[ClipKey, str]:
        """Give every clip an entry, decoding each video once for all its windows.

        Returns {clip key: reason} for the clips that cannot be decoded (the caller skips or stops).
        ``on_video(done, total)`` follows after each video not cached before; an exception it raises (an
        admin's cancel) stops the warm-up, keeping what was cached so far.
        """
        missing: dict[Path, list[ClipRecord]] = defaultdict(list)
        failed: dict[ClipKey, str] = {}
        for record in clips:
            try:
                if not self._entry_path(record).is_file():
                    missing[record.video].append(record)
            except OSError as exc:
                failed[record.clip_key] = f"cannot read {record.video}: {exc}"
        videos = tqdm(missing.items(), desc=desc, unit="video", leave=False, disable=None)
        for done, (video, records) in enumerate(videos, start=1):
            try:
                self._decode_and_store(video, records)
            except FrameError as exc:
                failed.update({r.clip_key: str(exc) for r in records})
            except OSError as exc:
                failed.update({r.clip_key: f"cannot read {video}: {exc}" for r in records})
            if on_video is not None:
                on_video(done, len(missing))
        return failed

    def _decode_and_store(self, video: Path, records: Sequence[ClipRecord]) -> dict[ClipKey, ClipFrames]:
        decoded = self._decoder(video, self.sampling)
        self.decodes += 1
        out: dict[ClipKey, ClipFrames] = {}
        for record in records:
            frames = cut_window(decoded, self.sampling, record.start_s, record.end_s, video)
            _atomic_save(self._entry_path(record), frames)
            out[record.clip_key] = frames
        return out

    def _entry_path(self, record: ClipRecord) -> Path:
        key = {
            "format": CACHE_FORMAT,
            "content": self._content_sha256(record.video),
            "fps": self.sampling.fps,
            "max_frames": self.sampling.max_frames,
            "image_size": self.sampling.image_size,
            "start_s": record.start_s,
            "end_s": record.end_s,
            **self._sampling_key,
        }
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
        return self.root / "frames" / digest[:2] / f"{digest}.npz"

    def _content_sha256(self, video: Path) -> str:
        st = video.stat()  # FileNotFoundError / PermissionError reach the caller as OSError
        signature = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        path_key = str(video.resolve())
        remembered = self._content.get(path_key)
        if remembered and remembered[0] == signature:
            return remembered[1]
        index = self.root / "content" / f"{hashlib.sha256(path_key.encode()).hexdigest()[:32]}.json"
        sha = _read_index(index, signature)
        if sha is None:
            sha = sha256_file(video)
            _atomic_write(
                index, json.dumps({"path": path_key, "signature": signature, "sha256": sha}).encode()
            )
        self._content[path_key] = (signature, sha)
        return sha


def _load(entry: Path) -> ClipFrames | None:
    try:
        with np.load(entry) as stored:
            return ClipFrames(stored["frames"], stored["timestamps"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError):
        entry.unlink(missing_ok=True)  # a torn or foreign file: decode again
        return None


def _read_index(index: Path, signature: tuple[int, int, int, int]) -> str | None:
    try:
        data = json.loads(index.read_text())
    except (OSError, ValueError):
        return None
    if tuple(data.get("signature", ())) != signature:
        return None
    sha = data.get("sha256")
    return sha if isinstance(sha, str) else None


def _atomic_save(entry: Path, frames: ClipFrames) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, frames=frames.frames, timestamps=frames.timestamps)
    _atomic_write(entry, buffer.getvalue())


def _atomic_write(path: Path, payload: bytes) -> None:
    """Write then rename, so a crash or a concurrent run never leaves a half-written entry behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(payload)
    tmp.replace(path)


def warm_dataset(
    dataset: ClipDataset, cache: FrameCache, on_bad: OnBad = "error", on_video: VideoHook | None = None
) -> ClipDataset:
    """Decode whatever is not cached yet; clips that cannot be decoded stop the run or are skipped (counted).

    A gallery-only clip (a distractor) that cannot be decoded is left out whatever ``on_bad`` says: it is no
    entry of the data the run was given."""
    clips, _ = dataset.clips()
    failed = cache.warm(clips, desc=f"caching frames of {Path(dataset.source).name}", on_video=on_video)
    if not failed:
        return dataset
    asked = {dataset.records[i].clip_key for i in dataset.query_rows()}
    if on_bad == "error" and (given := [reason for key, reason in failed.items() if key in asked]):
        raise FrameError(
            f"{len(given)} clip(s) of {dataset.source} cannot be decoded, e.g. {given[0]}. Fix or remove them, "
            "or pass --on-bad skip to leave them out."
        )
    kept = dataset.without(failed)
    if not kept.records:
        raise FrameError(f"no clip of {dataset.source} could be decoded (e.g. {next(iter(failed.values()))})")
    return kept
