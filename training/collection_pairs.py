"""A collection's own training pairs as a training set: captions, clicks on results and subtitles.

What ``POST /collections/{name}/retrain`` with no ``data`` trains on (``videoseek/pairs.py`` says where each
kind comes from). Every pair names a video of the collection; its frames come from the stored copy of that
video, decoded once into the training frame cache. Used: captions, positive feedback (the query and the clip
a user marked right) and subtitles (weak: they train, they never validate). Clicks train, and validate only
when a collection has too few captions to judge by: a user can only click what the serving version already
showed in its top results, so held-out clicks are, by how they were made, the queries it ranks well, and a
candidate judged on them is judged on what serves' home ground (the toy world: R@5 of 77% for plain CLIP on
held-out clicks, 23% on held-out captions). Hard negatives ("not this") are
kept with the collection but not used by this objective yet: the in-batch contrastive loss has no slot for
them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from training.data import BadEntry, ClipDataset, ClipRecord
from videoseek.layout import DataLayout
from videoseek.pairs import PairKind, PairStore, TrainingPair, iter_pairs

TRAINED_KINDS: tuple[PairKind, ...] = ("caption", "feedback_positive", "subtitle")
# A span shorter than this is widened around its middle: frames are sampled about once a second, and a
# one-second subtitle cue could otherwise hold none.
MIN_WINDOW_S = 2.0
COUNT_NAMES: dict[PairKind, str] = {
    "caption": "captions",
    "feedback_positive": "feedback",
    "subtitle": "subtitles",
}


@dataclass(frozen=True)
class CollectionPairs:
    """The training set, which of its records are weak (subtitles) and clicks, and how many of each kind."""

    dataset: ClipDataset
    weak: frozenset[int]
    clicked: frozenset[int]
    counts: dict[str, int]  # {"captions": n, "feedback": m, "subtitles": k}: the task result's training_pairs


def _window(pair: TrainingPair) -> tuple[float | None, float | None]:
    start, end = pair.start_s, pair.end_s
    if start is None or end is None or end - start >= MIN_WINDOW_S:
        return start, end
    middle = (start + end) / 2
    low = max(0.0, middle - MIN_WINDOW_S / 2)
    return low, low + MIN_WINDOW_S


def collection_pairs(pairs: PairStore, layout: DataLayout, collection: str) -> CollectionPairs:
    """Every trainable pair of ``collection`` whose video file is still stored (the others are skipped)."""
    records: list[ClipRecord] = []
    weak: set[int] = set()
    clicked: set[int] = set()
    skipped: list[BadEntry] = []
    counts = dict.fromkeys(COUNT_NAMES.values(), 0)
    files: dict[str, Path | None] = {}
    for pair in iter_pairs(pairs, collection, kinds=TRAINED_KINDS):
        if pair.video_id not in files:
            files[pair.video_id] = layout.video_file(collection, pair.video_id)
        video = files[pair.video_id]
        if video is None:
            skipped.append(BadEntry(f"pair {pair.id}", f"video {pair.video_id[:12]} has no stored file"))
            continue
        start, end = _window(pair)
        if pair.weak:
            weak.add(len(records))
        if pair.kind == "feedback_positive":
            clicked.add(len(records))
        records.append(ClipRecord(video, pair.text, start, end))
        counts[COUNT_NAMES[pair.kind]] += 1
    dataset = ClipDataset(records, f"collection {collection!r}: {counts}", skipped)
    return CollectionPairs(dataset, frozenset(weak), frozenset(clicked), counts)
