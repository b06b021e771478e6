"""Captioned clips for training and evaluation: the generic ``captions.jsonl`` manifest and MSR-VTT as distributed.

A dataset is a list of (video file, caption, optional window) records. Several captions may share one clip;
:meth:`ClipDataset.clips` groups them so evaluation embeds each clip once and scores every caption against it.

Bad entries (missing or unreadable video, empty caption, malformed line) either stop the run with the line and
the fix (``on_bad="error"``) or are dropped and counted (``on_bad="skip"``); a video that exists but cannot be
decoded is found later, by the frame cache, and handled the same way.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from training.config import OnBad

MSRVTT_JSON = "MSRVTT_data.json"
# File names the split files go by in the common MSR-VTT distributions (CLIP4Clip's msrvtt_data.zip first).
MSRVTT_SPLIT_FILES: dict[str, tuple[str, ...]] = {
    "train_9k": ("MSRVTT_train.9k.csv", "train_9k.csv", "train_9k.txt", "train_list_full.txt"),
    "train_7k": ("MSRVTT_train.7k.csv", "train_7k.csv", "train_list_jsfusion.txt"),
    "test_1k-A": ("MSRVTT_JSFUSION_test.csv", "test_1k-A.csv", "test_list_jsfusion.txt"),
}
MSRVTT_VIDEO_DIRS = ("videos/all", "videos", "MSRVTT_Videos", "TrainValVideo", ".")
VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".avi")


MAX_MANIFEST_BYTES = (
    1 << 30
)  # MSR-VTT's caption file is 30 MB; a manifest a thousand times larger is a mistake


class DataError(ValueError):
    """A dataset cannot be read as given; the message says where and how to fix it."""


ClipKey = tuple[str, float | None, float | None]


@dataclass(frozen=True)
class ClipRecord:
    """One caption for one clip: a whole video, or the window [start_s, end_s) of it."""

    video: Path
    caption: str
    start_s: float | None = None
    end_s: float | None = None

    @property
    def clip_key(self) -> ClipKey:
        return (str(self.video), self.start_s, self.end_s)


# The caption of a clip that is a candidate only, never a query (a distractor among held-out clips): its text is
# encoded like any other and its row dropped before ranking.
GALLERY_ONLY = "[videoseek gallery only]"


def as_gallery_only(records: Sequence[ClipRecord]) -> list[ClipRecord]:
    """These clips as candidates only (whatever their captions)."""
    return [replace(r, caption=GALLERY_ONLY) for r in records]


@dataclass(frozen=True)
class BadEntry:
    """An entry left out of a dataset, with where it came from and why."""

    where: str
    reason: str


@dataclass
class ClipDataset:
    """Records in file order plus what was skipped on the way."""

    records: list[ClipRecord]
    source: str
    skipped: list[BadEntry] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    def clips(self) -> tuple[list[ClipRecord], list[int]]:
        """Distinct clips (first record of each, file order) and, for every record, the index of its clip."""
        index: dict[ClipKey, int] = {}
        firsts: list[ClipRecord] = []
        owner: list[int] = []
        for record in self.records:
            key = record.clip_key
            if key not in index:
                index[key] = len(firsts)
                firsts.append(record)
            owner.append(index[key])
        return firsts, owner

    def query_rows(self) -> list[int]:
        """The records whose captions are asked (all but :data:`GALLERY_ONLY` ones)."""
        return [i for i, r in enumerate(self.records) if r.caption != GALLERY_ONLY]

    def without(self, bad_videos: dict[ClipKey, str]) -> ClipDataset:
        """A copy without the records whose clip is in ``bad_videos`` (clip key -> reason), counted as skipped."""
        kept = [r for r in self.records if r.clip_key not in bad_videos]
        dropped = [
            BadEntry(f"{r.video}", bad_videos[r.clip_key]) for r in self.records if r.clip_key in bad_videos
        ]
        return ClipDataset(kept, self.source, [*self.skipped, *dropped])

    def summary(self) -> dict[str, Any]:
        clips, _ = self.clips()
        return {
            "source": self.source,
            "captions": len(self.records),
            "clips": len(clips),
            "skipped": len(self.skipped),
            "skipped_examples": [f"{b.where}: {b.reason}" for b in self.skipped[:5]],
        }


def load_dataset(
    path: Path, *, split: str | None = None, videos_dir: Path | None = None, on_bad: OnBad = "error"
) -> ClipDataset:
    """Read a ``captions.jsonl`` manifest, or MSR-VTT given its ``MSRVTT_data.json`` (or the folder holding it)."""
    path = Path(path)
    if not path.exists():
        raise DataError(
            f"dataset {path} does not exist: pass a captions.jsonl file or MSR-VTT's {MSRVTT_JSON}"
        )
    if not (path.is_file() or path.is_dir()):  # a device or a pipe would be read forever
        raise DataError(f"dataset {path} is not a regular file or a folder")
    if path.is_file() and path.stat().st_size > MAX_MANIFEST_BYTES:
        raise DataError(f"dataset {path} is over {MAX_MANIFEST_BYTES // 2**20} MiB: is it really a manifest?")
    try:
        if path.is_dir() or path.name == MSRVTT_JSON:
            return read_msrvtt(path, split=split or "train_9k", videos_dir=videos_dir, on_bad=on_bad)
        return read_captions_jsonl(path, on_bad=on_bad)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path} is not UTF-8 text (byte {exc.start}): pass a captions.jsonl manifest or {MSRVTT_JSON}"
        ) from exc
    except OSError as exc:  # unreadable (permissions), or a special file
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc


def read_captions_jsonl(path: Path, *, on_bad: OnBad = "error") -> ClipDataset:
    """One JSON object a line: ``{"video": path relative to the manifest, "caption": text, "start_s"?, "end_s"?}``."""
    base = path.resolve().parent
    dataset = ClipDataset([], str(path))
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path.name} line {number}"
            try:
                record = _parse_manifest_line(line, base)
            except DataError as exc:
                _reject(dataset, where, str(exc), on_bad)
                continue
            _accept(dataset, record, where, on_bad)
    _require_some(dataset)
    return dataset


def read_msrvtt(
    root: Path, *, split: str, videos_dir: Path | None = None, on_bad: OnBad = "error"
) -> ClipDataset:
    """MSR-VTT: every caption of the split's videos; test files with a ``sentence`` column (1k-A) use those."""
    json_path = root / MSRVTT_JSON if root.is_dir() else root
    if not json_path.is_file():
        raise DataError(f"{json_path} not found: point --data at MSR-VTT's {MSRVTT_JSON} or its folder")
    folder = json_path.parent
    split_path = _msrvtt_split_file(folder, split)
    video_ids, sentences = _read_split_file(split_path)
    videos = videos_dir or _msrvtt_videos_dir(folder)
    if sentences is None:
        sentences = _msrvtt_captions(json_path, video_ids)
    dataset = ClipDataset([], f"{json_path} [{split_path.name}]")
    for number, (video_id, caption) in enumerate(sentences, start=1):
        where = f"{split_path.name} entry {number} ({video_id})"
        record = ClipRecord(_msrvtt_video(videos, video_id), caption.strip())
        _accept(dataset, record, where, on_bad)
    _require_some(dataset)
    return dataset


def check_video_file(video: Path) -> str | None:
    """Why ``video`` cannot be used (missing, empty, unreadable), or None when it can be opened."""
    if not video.exists():
        return f"video {video} not found"
    if not video.is_file():
        return f"video {video} is not a file"
    if video.stat().st_size == 0:
        return f"video {video} is empty"
    if not os.access(video, os.R_OK):
        return f"video {video} is not readable (check its permissions)"
    return None


def _parse_manifest_line(line: str, base: Path) -> ClipRecord:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON ({exc.msg})") from exc
    if not isinstance(row, dict):
        raise DataError('expected an object like {"video": "a.mp4", "caption": "..."}')
    video, caption = row.get("video"), row.get("caption")
    if not isinstance(video, str) or not video:
        raise DataError('missing "video" (a path relative to the manifest)')
    if not isinstance(caption, str):
        raise DataError('missing "caption" (a non-empty string)')
    start, end = _window(row.get("start_s"), row.get("end_s"))
    return ClipRecord((base / video).resolve(), caption.strip(), start, end)


def _seconds(name: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DataError(f'"{name}" must be a number of seconds, got {value!r}')
    return float(value)


def _window(start: object, end: object) -> tuple[float | None, float | None]:
    start_s, end_s = _seconds("start_s", start), _seconds("end_s", end)
    if start_s is not None and start_s < 0:
        raise DataError(f'"start_s" must be >= 0, got {start_s}')
    if end_s is not None and end_s <= (start_s or 0.0):
        raise DataError(f'"end_s" ({end_s}) must be after "start_s" ({start_s or 0.0})')
    return start_s, end_s


def _accept(dataset: ClipDataset, record: ClipRecord, where: str, on_bad: OnBad) -> None:
    if not record.caption:
        _reject(dataset, where, "empty caption", on_bad)
        return
    problem = check_video_file(record.video)
    if problem:
        _reject(dataset, where, problem, on_bad)
        return
    dataset.records.append(record)


def _reject(dataset: ClipDataset, where: str, reason: str, on_bad: OnBad) -> None:
    if on_bad == "error":
        raise DataError(f"{where}: {reason}. Fix the entry, or pass --on-bad skip to leave such entries out.")
    dataset.skipped.append(BadEntry(where, reason))


def _require_some(dataset: ClipDataset) -> None:
    if not dataset.records:
        raise DataError(
            f"{dataset.source}: no usable captioned clips ({len(dataset.skipped)} skipped"
            + (f", e.g. {dataset.skipped[0].where}: {dataset.skipped[0].reason}" if dataset.skipped else "")
            + ")"
        )


def _msrvtt_split_file(folder: Path, split: str) -> Path:
    given = Path(split)
    if given.suffix in (".csv", ".txt") and given.is_file():
        return given
    names = MSRVTT_SPLIT_FILES.get(split)
    if names is None:
        raise DataError(
            f"unknown MSR-VTT split {split!r}: use one of {', '.join(MSRVTT_SPLIT_FILES)} or a split file path"
        )
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"no split file for {split} in {folder}: expected one of {', '.join(names)}")


def _read_split_file(path: Path) -> tuple[list[str], list[tuple[str, str]] | None]:
    """Video ids in file order, plus (video id, sentence) pairs when the file carries sentences (1k-A)."""
    if path.suffix == ".txt":
        ids = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return ids, None
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or "video_id" not in rows[0]:
        raise DataError(f"{path} has no video_id column: is it an MSR-VTT split file?")
    ids = [row["video_id"].strip() for row in rows]
    if "sentence" in rows[0]:
        return ids, [(row["video_id"].strip(), row["sentence"]) for row in rows]
    return ids, None


def _msrvtt_captions(json_path: Path, video_ids: list[str]) -> list[tuple[str, str]]:
    order = {video_id: i for i, video_id in enumerate(video_ids)}
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
        sentences: Iterable[dict[str, Any]] = data["sentences"]
        pairs = [(s["video_id"], s["caption"]) for s in sentences if s["video_id"] in order]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataError(
            f"{json_path} is not MSR-VTT's caption file (expected a 'sentences' list): {exc}"
        ) from exc
    # Group by video in split order (stable: captions keep their JSON order within a video).
    return sorted(pairs, key=lambda pair: order[pair[0]])


def _msrvtt_videos_dir(folder: Path) -> Path:
    for candidate in MSRVTT_VIDEO_DIRS:
        directory = folder / candidate
        if directory.is_dir() and any(directory.glob("video*.*")):
            return directory
    raise DataError(
        f"no MSR-VTT videos (video0.mp4, ...) under {folder} ({', '.join(MSRVTT_VIDEO_DIRS)}): pass --videos DIR"
    )


def _msrvtt_video(directory: Path, video_id: str) -> Path:
    for suffix in VIDEO_SUFFIXES:
        candidate = directory / f"{video_id}{suffix}"
        if candidate.exists():
            return candidate.resolve()
    return (directory / f"{video_id}.mp4").resolve()
