"""A video's training pairs as its ingest ends: its subtitle cues stored, the captions sent with it fitted to it.

Runs once the video's clips are in the store (the last step of indexing), so subtitle pairs only ever name
videos of the collection, and again harmlessly on a redelivery: pair ids come from what the pairs say.
Captions and sidecar cues sent with an upload were stored when its job was created, before anyone knew how
long the video is; here the ones that start after its end are removed and the ones that run past it are cut
to it, each said in the job's problems.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from videoseek.context import PipelineContext
from videoseek.jobs import Job
from videoseek.pairs import InvalidPair, TrainingPair, check_window, iter_pairs, text_pair
from videoseek.subtitle_text import MAX_CUES_PER_VIDEO, SubtitleCue


def settle_video_pairs(
    ctx: PipelineContext, job: Job, duration_s: float | None, cues: Sequence[SubtitleCue]
) -> list[str]:
    """Store the video's subtitle cues as weak pairs and fit the captions and sidecar cues sent with it to
    ``duration_s``; returns what was left out or changed, in words (for the job's problems)."""
    problems = _store_subtitles(ctx, job, duration_s, cues)
    if duration_s is not None and duration_s > 0:
        problems += _fit_to_video(ctx, job, "caption", "caption(s)", duration_s)
        problems += _fit_to_video(ctx, job, "subtitle", "sidecar subtitle cue(s)", duration_s)
    return problems


def _store_subtitles(
    ctx: PipelineContext, job: Job, duration_s: float | None, cues: Sequence[SubtitleCue]
) -> list[str]:
    pairs: dict[str, TrainingPair] = {}  # by id: identical cues of several tracks are one pair
    outside = 0
    for cue in cues[:MAX_CUES_PER_VIDEO]:
        try:
            pair = text_pair(
                job.collection,
                job.video_id,
                "subtitle",
                cue.text,
                cue.start_s,
                cue.end_s,
                source=cue.source,
                duration_s=duration_s,
            )
        except InvalidPair:  # starts after the video ends (or says nothing once cleaned)
            outside += 1
            continue
        pairs.setdefault(pair.id, pair)
    ctx.pairs.add(list(pairs.values()))
    return [f"{outside} subtitle cue(s) start after the video ends and were left out"] if outside else []


def _fit_to_video(
    ctx: PipelineContext, job: Job, kind: Literal["caption", "subtitle"], what: str, duration_s: float
) -> list[str]:
    """Remove the video's pairs of ``kind`` that start after its end; cut those that run past it."""
    dropped: list[TrainingPair] = []
    cut: list[tuple[TrainingPair, TrainingPair]] = []  # (as sent, as kept)
    for pair in list(iter_pairs(ctx.pairs, job.collection, kinds=(kind,), video_id=job.video_id)):
        try:
            start_s, end_s = check_window(pair.start_s, pair.end_s, duration_s)
        except InvalidPair:
            dropped.append(pair)
            continue
        if end_s != pair.end_s:  # a new span is a new pair (ids come from the span)
            kept = text_pair(
                job.collection, job.video_id, kind, pair.text, start_s, end_s, source=pair.source
            )
            cut.append((pair, kept))
    ctx.pairs.add([kept for _, kept in cut])
    for pair in [*dropped, *(sent for sent, _ in cut)]:
        ctx.pairs.delete(job.collection, pair.id)
    problems = []
    if dropped:
        first = dropped[0]
        problems.append(
            f"{len(dropped)} {what} start after the video ends ({duration_s:.3f} s) and were removed "
            f"(first: {first.text[:80]!r} from {first.start_s} s)"
        )
    if cut:
        problems.append(f"{len(cut)} {what} ran past the video's end and were cut to {duration_s:.3f} s")
    return problems
