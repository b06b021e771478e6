"""Held-out splits by video: the clips of one video are all on one side, and a video stays on its side.

Validation must measure what a retrain does for videos it did not learn from, so a split never cuts through a
video (its captions, clicks and subtitles go together). Which side a video falls on comes from a hash of its
file name (a collection's stored files are named by content hash), so every retrain of a collection holds out
the same videos: an adapter trained last time never saw this time's held-out videos either.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from training.data import ClipDataset, ClipRecord


def _side(record: ClipRecord, salt: str) -> float:
    """A number in [0, 1) fixed by the video's file name and the split's salt."""
    digest = hashlib.sha256(f"{salt}:{record.video.name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_by_video(dataset: ClipDataset, fraction: float, salt: str) -> tuple[ClipDataset, ClipDataset]:
    """(kept, held out): about ``fraction`` of the videos, with every record of each, are held out."""
    held = [r for r in dataset.records if _side(r, salt) < fraction]
    kept = [r for r in dataset.records if _side(r, salt) >= fraction]
    return (
        ClipDataset(kept, dataset.source, list(dataset.skipped)),
        ClipDataset(held, f"{dataset.source} (held out: {salt})"),
    )


@dataclass(frozen=True)
class ValidationSplits:
    """What a retrain learns from, what stops it early (``dev``) and what the guard judges on (``guard``).

    ``dev`` and ``guard`` are distinct videos: the guard's numbers are not flattered by early stopping having
    picked the epoch that scored best on them. Either is None when the data is too small to spare it.
    """

    train: ClipDataset
    dev: ClipDataset | None
    guard: ClipDataset | None


def validation_splits(
    dataset: ClipDataset,
    guard_fraction: float,
    *,
    min_pairs: int,
    weak: frozenset[int] = frozenset(),
) -> ValidationSplits:
    """Split off the guard's videos, then a smaller dev set for early stopping, when each gets ``min_pairs``.

    ``weak``: indices of records that may train but never validate (subtitles; clicks, when captions can
    validate): a held-out video's weak records are dropped rather than trained on.
    """
    strong = ClipDataset([r for i, r in enumerate(dataset.records) if i not in weak], dataset.source)
    rest, guard = split_by_video(strong, guard_fraction, "guard")
    if len(guard) < min_pairs or len(rest) < 2:
        return ValidationSplits(dataset, None, None)
    train, dev_split = split_by_video(rest, guard_fraction / 2, "dev")
    dev: ClipDataset | None = dev_split
    if len(dev_split) < min_pairs or len(train) < 2:
        train, dev = rest, None
    held_videos = {r.video for r in guard.records} | ({r.video for r in dev.records} if dev else set())
    extra = [r for i, r in enumerate(dataset.records) if i in weak and r.video not in held_videos]
    train = ClipDataset([*train.records, *extra], dataset.source, list(dataset.skipped))
    return ValidationSplits(train, dev, guard)
