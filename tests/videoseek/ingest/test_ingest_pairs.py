"""Training pairs through ingest: subtitle tracks become weak timed pairs, captions sent with a file are fitted
to its length, and a video that leaves the collection (failed, deleted) takes its pairs with it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from ingest_helpers import ingest_all
from video_factory import mux_subtitles, write_video

from videoseek.collections import create_collection, delete_collection, delete_video
from videoseek.jobs import JobStage
from videoseek.pairs import PairDraft, iter_pairs
from videoseek.runtime.embedded import EmbeddedRuntime

SRT = """1
00:00:00,500 --> 00:00:01,500
a red <i>ball</i>
bounces

2
00:00:02,000 --> 00:00:09,000
{\\an8}a blue cube

3
00:00:05,000 --> 00:00:06,000
after the end
"""
VTT = """WEBVTT

NOTE a comment block, not a cue

cue-1
00:00.500 --> 00:01.500 align:start
<v Narrator>a red ball</v> bounces

00:01.000 --> 00:02.500
two &amp; three
"""


def _three_seconds(tmp_path: Path, name: str = "plain.mp4") -> Path:
    return write_video(tmp_path / name, n=30, rate=10)  # 3.0 s at 10 fps


def _with_tracks(tmp_path: Path) -> Path:
    (tmp_path / "subs.srt").write_text(SRT)
    (tmp_path / "subs.vtt").write_text(VTT)
    return mux_subtitles(
        _three_seconds(tmp_path), [tmp_path / "subs.srt", tmp_path / "subs.vtt"], tmp_path / "subbed.mkv"
    )


def test_subtitle_tracks_in_the_file_become_weak_timed_pairs_of_the_video(
    runtime: EmbeddedRuntime, tmp_path: Path
) -> None:
    ctx = runtime.context
    create_collection(ctx, "films")
    (job,) = ingest_all(runtime, "films", [_with_tracks(tmp_path)])
    assert job.stage is JobStage.DONE, job.reason
    pairs = list(iter_pairs(ctx.pairs, "films"))
    assert {p.kind for p in pairs} == {"subtitle"} and all(
        p.weak and p.video_id == job.video_id for p in pairs
    )
    found = sorted((p.start_s, p.end_s, p.text, p.source) for p in pairs)
    assert found == [
        (0.5, 1.5, "a red ball bounces", "subtitle track 1"),  # SubRip markup gone; the WebVTT track's
        (1.0, 2.5, "two & three", "subtitle track 2"),  # same cue is the same pair; voice tags, entities
        (2.0, 3.0, "a blue cube", "subtitle track 1"),  # ASS override block gone, cut to the video's end
    ]
    assert any("1 subtitle cue(s) start after the video ends" in p for p in job.problems), job.problems


def test_an_ass_track_and_identical_mov_text_tracks_of_real_files(
    runtime: EmbeddedRuntime, corpus_dir: Path, tmp_path: Path
) -> None:
    ctx = runtime.context
    create_collection(ctx, "corpus")
    files = [corpus_dir / "mediabunny__test-mkv-ass.mkv", corpus_dir / "fulcrumfs__video133_many_streams.mp4"]
    for path in files:
        if not path.is_file():
            pytest.skip(f"{path.name} is not in the corpus")
    ass, mov_text = ingest_all(runtime, "corpus", files)
    assert ass.stage is JobStage.DONE and mov_text.stage is JobStage.DONE, (ass.reason, mov_text.reason)
    texts = [(p.start_s, p.text) for p in iter_pairs(ctx.pairs, "corpus", video_id=ass.video_id)]
    assert texts == [(1.021, "Hello world!"), (5.021, "This is a test."), (8.521, "Goodbye!")]
    # Three tracks say the same thing at the same time: one pair.
    cues = list(iter_pairs(ctx.pairs, "corpus", video_id=mov_text.video_id))
    assert [(p.start_s, p.end_s, p.text) for p in cues] == [(0.5, 0.9, "Test subtitle line 1.")]


def test_captions_sent_with_a_file_are_listed_at_once_then_fitted_to_the_video(
    runtime: EmbeddedRuntime, tmp_path: Path
) -> None:
    ctx = runtime.context
    create_collection(ctx, "films")
    drafts = [
        PairDraft.checked("caption", "the whole clip"),
        PairDraft.checked("caption", "runs past the end", 1.0, 30.0),
        PairDraft.checked("caption", "starts after the end", 4.0, 5.0),
        PairDraft.checked("subtitle", "from a sidecar", 0.0, 1.0, source="sidecar a.srt"),
        PairDraft.checked("subtitle", "a sidecar cue after the end", 3.5, 4.0, source="sidecar a.srt"),
    ]
    runtime.start()
    submitted = runtime.submit_ingest("films", _three_seconds(tmp_path), pairs=drafts)
    listed_at_submit = {p.text for p in iter_pairs(ctx.pairs, "films")}
    assert runtime.runner.join(timeout=120)
    job = ctx.jobs.require(submitted.job_id)
    assert job.stage is JobStage.DONE, job.reason
    assert (
        "starts after the end" in listed_at_submit
    )  # stored with the job, before the video's length was known
    kept = {p.text: (p.kind, p.start_s, p.end_s) for p in iter_pairs(ctx.pairs, "films")}
    assert kept == {
        "the whole clip": ("caption", None, None),
        "runs past the end": ("caption", 1.0, 3.0),
        "from a sidecar": ("subtitle", 0.0, 1.0),
    }
    assert any("1 caption(s) start after the video ends" in p for p in job.problems), job.problems
    assert any("1 sidecar subtitle cue(s) start after the video ends" in p for p in job.problems), (
        job.problems
    )
    assert any("1 caption(s) ran past the video's end and were cut to 3.000 s" in p for p in job.problems)

    # The same file again, with captions: a duplicate; its captions are the video's too, fitted at once.
    copy = shutil.copyfile(tmp_path / "plain.mp4", tmp_path / "copy.mp4")
    again = runtime.submit_ingest("films", copy, pairs=[PairDraft.checked("caption", "again", 2.5, 7.0)])
    assert again.duplicate
    assert {p.text: p.end_s for p in iter_pairs(ctx.pairs, "films")}["again"] == 3.0


def test_a_video_that_fails_or_is_deleted_takes_its_pairs_and_no_other(
    runtime: EmbeddedRuntime, tmp_path: Path
) -> None:
    ctx = runtime.context
    create_collection(ctx, "films")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x20ftypisom" + bytes(range(256)) * 8)  # not a video: its job fails
    caption = [PairDraft.checked("caption", "never indexed")]
    good_a, good_b = _three_seconds(tmp_path, "a.mp4"), _with_tracks(tmp_path)
    runtime.start()
    failed = runtime.submit_ingest("films", broken, pairs=caption)
    a = runtime.submit_ingest("films", good_a, pairs=[PairDraft.checked("caption", "video a")])
    b = runtime.submit_ingest("films", good_b, pairs=[PairDraft.checked("caption", "video b")])
    assert runtime.runner.join(timeout=120)
    assert ctx.jobs.require(failed.job_id).stage is JobStage.FAILED
    assert list(iter_pairs(ctx.pairs, "films", video_id=failed.video_id)) == []

    delete_video(ctx, "films", a.video_id)
    assert list(iter_pairs(ctx.pairs, "films", video_id=a.video_id)) == []
    assert "video b" in {p.text for p in iter_pairs(ctx.pairs, "films", video_id=b.video_id)}

    delete_collection(ctx, "films")
    assert sum(ctx.pairs.counts("films").values()) == 0
    create_collection(ctx, "films")  # a collection made again under the name starts without pairs
    assert list(iter_pairs(ctx.pairs, "films")) == []
