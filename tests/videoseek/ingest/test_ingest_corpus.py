"""Real odd files from the shared corpus: each one ends indexed or failed with a reason; no crash, no hang."""

from __future__ import annotations

from pathlib import Path

import pytest

from videoseek.collections import create_collection
from videoseek.jobs import JobStage
from videoseek.runtime.embedded import EmbeddedRuntime


def _ingest_and_check(runtime: EmbeddedRuntime, files: list[Path], timeout_s: float) -> dict[str, str]:
    """Ingest ``files`` (playback copies included); name -> "indexed", "duplicate" or the failure's reason.

    An indexed file browsers cannot play has its playback copy, or a failed one whose reason is in its problems.
    """
    create_collection(runtime.context, "corpus")
    runtime.start()
    submitted = {f.name: runtime.submit_ingest("corpus", f) for f in files}
    assert runtime.runner.join(timeout_s), "ingest of the corpus hung"
    store, outcome = runtime.context.store, {}
    for name, result in submitted.items():
        job = runtime.context.jobs.get(result.job_id)
        assert job is not None and job.stage.terminal, (name, job)
        if job.stage is JobStage.DONE and not job.duplicate:
            assert job.clips >= 1 and store.count("corpus", job.video_id) == job.clips, name
            copy = runtime.context.layout.playback_file("corpus", job.video_id)
            assert job.playback in ("original", "ready", "failed"), (name, job.playback)
            assert copy.is_file() == (job.playback == "ready"), name
            if job.playback == "failed":
                assert any("browser-playable" in p for p in job.problems), (name, job.problems)
            outcome[name] = "indexed"
        elif job.stage is JobStage.FAILED:
            assert job.reason and not job.reason.startswith("internal error"), (name, job.reason)
            outcome[name] = job.reason
        else:
            outcome[name] = "duplicate"
    return outcome


@pytest.mark.timeout(900)  # ~25 of the files also get a playback copy (minutes of x264 on two cores)
def test_every_corpus_file_ends_indexed_or_failed_with_a_reason(
    runtime: EmbeddedRuntime, corpus_dir: Path
) -> None:
    """40 files: empty, audio only, no streams, corrupt, huge, 1x1, GIF, rotated, interlaced, truncated..."""
    files = sorted(p for p in corpus_dir.iterdir() if p.is_file() and p.suffix not in (".tsv", ".md"))
    outcome = _ingest_and_check(runtime, files, timeout_s=600)
    assert len(outcome) == len(files) >= 40
    assert "empty" in outcome["moviepy__result_zero_bytes.webm"]
    assert "no video stream" in outcome["fulcrumfs__video161_audio_only.mp4"]
    assert "no streams" in outcome["fulcrumfs__video168_zero_streams.mp4"]
    assert "limit" in outcome["fulcrumfs__video107_8192x4320_h264.mp4"]  # refused before decoding
    for playable in (
        "moviepy__bitmap.mp4",
        "imageio__newtonscradle.gif",
        "mediabunny__rotate-buck-bunny.mp4",
    ):
        assert outcome[playable] == "indexed", (playable, outcome[playable])
    assert sum(v == "indexed" for v in outcome.values()) >= 30, outcome
    playback = {
        name: runtime.context.jobs.require(job.job_id).playback
        for name, job in ((j.source, j) for j in runtime.context.jobs.list("corpus", limit=100))
        if outcome.get(name) == "indexed"
    }
    for copied in (  # AVI, MPEG-TS, MPEG-PS, Matroska/H.264, HEVC in MOV, H.264 4:4:4, GIF
        "mmaction2__test.avi",
        "interlace__bt601-525_480_interlaced_bff.ts",
        "taglib__sample.mpg",
        "taglib__sample.mkv",
        "mediabunny__no-correct-videoframe-format.mov",
        "imageio__cockatoo.mp4",
        "imageio__newtonscradle.gif",
    ):
        assert playback[copied] == "ready", (copied, playback[copied])
    for plays in (
        "moviepy__chaplin.mp4",
        "libwebm__bbb_480p_vp9_opus_1second.webm",
        "mediabunny__rotate-buck-bunny.mp4",
    ):
        assert playback[plays] == "original", (plays, playback[plays])
