"""Real odd files from the shared corpus: each one ends indexed or failed with a reason; no crash, no hang."""

from __future__ import annotations

from pathlib import Path

from videoseek.collections import create_collection
from videoseek.jobs import JobStage
from videoseek.runtime.embedded import EmbeddedRuntime


def _ingest_and_check(runtime: EmbeddedRuntime, files: list[Path], timeout_s: float) -> dict[str, str]:
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
            outcome[name] = "indexed"
        elif job.stage is JobStage.FAILED:
            assert job.reason and not job.reason.startswith("internal error"), (name, job.reason)
            outcome[name] = job.reason
        else:
            outcome[name] = "duplicate"
    return outcome


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
