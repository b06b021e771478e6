"""Odd files through the real ingest path (submit_ingest, the embedded runner, sandboxed PyAV, the toy CLIP,
Qdrant Edge): every container and codec, rotated, variable frame rate, one frame, damaged, edited, raw
elementary stream and hostile files end DONE with their clips in the store (and, when part of them did not
decode, say so on the job), or FAILED with a reason a user understands (encrypted ones too).

Every file is generated once and ingested together through one runner (module scope), so the whole table
costs one model load and overlapping decodes; each case then checks its own outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from video_factory import (
    QUIET_X265,
    cut_transport_stream_head,
    frame_index_of,
    patch_gif_screen,
    remux_with_edit_list,
    with_mvc_extension_units,
    write_audio_only,
    write_encrypted_mp4,
    write_video,
)

from videoseek.cli.runtime import training_work
from videoseek.collections import create_collection
from videoseek.ingest.pipeline import read_clip_plan
from videoseek.jobs import Job, JobStage
from videoseek.layout import DataLayout
from videoseek.runtime.embedded import EmbeddedRuntime
from videoseek.settings import Settings, load_settings
from videoseek.video import FrameCache

COLLECTION = "odd"
VP9 = {"codec": "libvpx-vp9", "codec_options": {"deadline": "realtime", "cpu-used": "8"}}
VFR_TIMES = [0.0, 0.1, 0.15, 0.9, 1.0, 1.05, 2.6, 2.7, 4.2, 4.25, 4.3, 5.5]


def _truncated(source: Path, dst: Path) -> Path:
    dst.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    return dst


def _make_files(out: Path) -> dict[str, Path]:
    """Every odd file, by case name (small: 64x48, 10 fps)."""
    faststart = write_video(out / "src_faststart.mp4", n=80, container_options={"movflags": "faststart"})
    plain = write_video(out / "src_plain.mp4", n=80)
    gif = write_video(out / "src.gif", codec="gif", pix_fmt="rgb8", n=10)
    gop = write_video(out / "src_gop30.mp4", n=90, codec_options={"g": "30", "bf": "2"})
    ts = write_video(
        out / "src_gop40.ts", n=90, fmt="mpegts", codec_options={"g": "40", "x264-params": "scenecut=0"}
    )
    annexb = write_video(out / "annexb.h264", n=120, fmt="h264")
    (out / "empty.webm").write_bytes(b"")
    (out / "random.mp4").write_bytes(np.random.default_rng(5).bytes(32 * 1024))
    return {
        "mp4_h264_12s": write_video(out / "h264.mp4", n=120),
        "webm_vp9": write_video(out / "vp9.webm", **VP9),  # type: ignore[arg-type]
        "mkv_h264": write_video(out / "h264.mkv"),
        "mov_h264": write_video(out / "h264.mov"),
        "avi_mpeg4": write_video(out / "mpeg4.avi", codec="mpeg4", codec_options={"qscale": "2"}),
        "gif": write_video(out / "anim.gif", codec="gif", pix_fmt="rgb8"),
        "rotated_90": write_video(out / "rot90.mp4", rotation=90),
        "vfr": write_video(out / "vfr.mkv", n=len(VFR_TIMES), times=VFR_TIMES),
        "one_frame": write_video(out / "one.mp4", n=1),
        "truncated": _truncated(faststart, out / "truncated.mp4"),
        "truncated_without_index": _truncated(plain, out / "truncated_plain.mp4"),
        "edit_list": remux_with_edit_list(gop, out / "edit_list.mp4", cut_s=1.5),
        "mid_gop_ts": cut_transport_stream_head(ts, out / "mid_gop.ts", 0.2),
        "h264_annexb": annexb,
        "hevc_annexb": write_video(
            out / "annexb.hevc", codec="libx265", n=120, fmt="hevc", codec_options=QUIET_X265
        ),
        "h264_annexb_mvc": with_mvc_extension_units(annexb, out / "3d.264"),
        "encrypted_cenc_mp4": write_encrypted_mp4(out / "cenc.mp4", n=120),
        "encrypted_cenc_fragmented_mp4": write_encrypted_mp4(out / "cenc_dash.mp4", fragmented=True, n=120),
        "huge_header_16000x16000": patch_gif_screen(gif, out / "huge.gif", 16000, 16000),
        "huge_header_65534x64": patch_gif_screen(gif, out / "wide.gif", 65534, 64),
        "audio_only": write_audio_only(out / "audio.mp4"),
        "zero_bytes": out / "empty.webm",
        "random_bytes": out / "random.mp4",
    }


@dataclass
class Outcome:
    job: Job
    points: int
    timestamps: np.ndarray = field(default_factory=lambda: np.zeros(0))
    frames: np.ndarray = field(default_factory=lambda: np.zeros((0, 1, 1, 3), np.uint8))


@dataclass
class Ingested:
    runtime: EmbeddedRuntime
    outcomes: dict[str, Outcome]


def _clean_settings(data_dir: Path, model: str) -> Settings:
    """Settings of this module's data dir only (no developer VIDEOSEEK_* variable leaks in)."""
    import os

    with pytest.MonkeyPatch.context() as env:
        for name in [n for n in os.environ if n.startswith("VIDEOSEEK_")]:
            env.delenv(name)
        return load_settings(data_dir=data_dir, model=model, device="cpu")


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory, model_spec: str) -> Iterator[Ingested]:
    files = _make_files(tmp_path_factory.mktemp("odd-files"))
    settings = _clean_settings(tmp_path_factory.mktemp("odd-data"), model_spec)
    runtime = EmbeddedRuntime(settings, training_work(), queue_size=len(files))
    try:
        create_collection(runtime.context, COLLECTION)
        runtime.start(recover=False)
        submitted = {name: runtime.submit_ingest(COLLECTION, path) for name, path in files.items()}
        assert runtime.runner.join(timeout=240), "ingest of the odd files hung"
        jobs, store = runtime.context.jobs, runtime.context.store
        cache = FrameCache(DataLayout(settings.data_dir).frames_dir(COLLECTION))
        outcomes = {}
        for name, result in submitted.items():
            job = jobs.require(result.job_id)
            outcome = Outcome(job, store.count(COLLECTION, job.video_id))
            if job.stage is JobStage.DONE:
                outcome.timestamps, outcome.frames = cache.get(job.video_id)
            outcomes[name] = outcome
        yield Ingested(runtime, outcomes)
    finally:
        runtime.close()


# (case, expected clips) for files that index; problems: a word the job's problems must contain, or None
# for a file that decoded whole.
INDEXED: dict[str, tuple[int, str | None]] = {
    "mp4_h264_12s": (2, None),  # 12 s: [0, 10] and [2, 12]
    "webm_vp9": (1, None),
    "mkv_h264": (1, None),
    "mov_h264": (1, None),
    "avi_mpeg4": (1, None),
    "gif": (1, None),
    "rotated_90": (1, None),
    "vfr": (1, "no frames in"),  # pauses over 1 s are reported: the decoder cannot tell them from damage
    "one_frame": (1, None),
    "truncated": (1, "truncated"),
    "edit_list": (1, None),
    "mid_gop_ts": (1, "without a keyframe"),
    "h264_annexb": (2, None),  # raw streams, 12 s at 10 fps: no timestamps, no duration in the file
    "hevc_annexb": (2, None),
    "h264_annexb_mvc": (2, None),
}
# (case, words the failure reason must contain)
FAILED: dict[str, tuple[str, ...]] = {
    "truncated_without_index": ("not a video file",),
    "huge_header_16000x16000": ("16000x16000", "limit"),
    "huge_header_65534x64": ("65534x64", "limit"),
    "audio_only": ("no video stream",),
    "zero_bytes": ("empty",),
    "random_bytes": ("not a video file",),
    "encrypted_cenc_mp4": ("encrypted content cannot be indexed", "'cenc'"),
    "encrypted_cenc_fragmented_mp4": ("encrypted content cannot be indexed", "'cenc'"),
}


@pytest.mark.parametrize("case", sorted(INDEXED) + sorted(FAILED))
def test_odd_file_ends_done_with_its_clips_stored_or_failed_with_a_reason(
    ingested: Ingested, case: str
) -> None:
    outcome = ingested.outcomes[case]
    job = outcome.job
    if case in FAILED:
        assert job.stage is JobStage.FAILED, (case, job)
        assert job.reason and all(word in job.reason for word in FAILED[case]), job.reason
        assert not job.reason.startswith("internal error")
        assert outcome.points == 0  # a failed job leaves nothing in the store
        return
    clips, problem = INDEXED[case]
    assert (job.stage, job.reason, job.progress) == (JobStage.DONE, None, 1.0), (case, job)
    assert job.clips == clips == outcome.points
    if problem is None:
        assert job.problems == [], job.problems
    else:
        assert any(problem in line for line in job.problems), job.problems


def test_damaged_file_that_indexes_records_what_did_not_decode_on_its_job(ingested: Ingested) -> None:
    """Visible wherever the job is read: the job store, the API's job resource, the CLI summary."""
    from service.schemas import JobOut
    from videoseek.cli.ingest_summary import Entry, print_summary, summarize

    truncated = ingested.outcomes["truncated"].job
    stored = ingested.runtime.context.jobs.require(truncated.job_id)
    assert stored.stage is JobStage.DONE and stored.clips >= 1 and stored.problems
    assert any("truncated" in p for p in stored.problems)
    assert JobOut.model_validate(stored.to_dict()).problems == stored.problems

    whole = ingested.outcomes["mkv_h264"].job
    entries = [
        Entry("truncated.mp4", job_id=truncated.job_id, video_id=truncated.video_id),
        Entry("h264.mkv", job_id=whole.job_id, video_id=whole.video_id),
    ]
    summary = summarize(ingested.runtime.context.jobs.get, entries, None, "it resumes at the next run")
    by_file = {item["file"]: item for item in summary["indexed"]}
    assert by_file["truncated.mp4"]["problems"] == stored.problems
    assert by_file["h264.mkv"]["problems"] == []
    lines: list[str] = []
    _print_via(lambda: print_summary(summary), lines)
    assert any("truncated" in line for line in lines)
    assert lines[-1].startswith("2 indexed (1 with parts that did not decode)")


def _print_via(fn: Callable[[], Any], lines: list[str]) -> None:
    """Collect what ``typer.echo`` prints (the human summary)."""
    import typer

    original = typer.echo
    typer.echo = lambda message="", **_: lines.append(str(message))  # type: ignore[assignment]
    try:
        fn()
    finally:
        typer.echo = original


def test_rotated_video_is_stored_upright(ingested: Ingested) -> None:
    frames = ingested.outcomes["rotated_90"].frames
    assert frames.shape[1:] == (64, 48, 3)  # 64x48 turned a quarter: portrait


def test_variable_frame_rate_video_is_sampled_by_presentation_time(ingested: Ingested) -> None:
    # The first frame at or after each second: 0, 1, then 2.6 (nothing in 2-2.6), 4.2 (covers 3 and 4), 5.5.
    np.testing.assert_allclose(ingested.outcomes["vfr"].timestamps, [0.0, 1.0, 2.6, 4.2, 5.5], atol=1e-3)


def test_edit_list_video_is_indexed_from_the_cut(ingested: Ingested) -> None:
    outcome = ingested.outcomes["edit_list"]
    np.testing.assert_allclose(outcome.timestamps, np.arange(8), atol=1e-3)
    assert frame_index_of(outcome.frames[0]) == 15  # 1.5 s into the 10 fps source


def test_stream_cut_mid_gop_indexes_from_its_first_keyframe(ingested: Ingested) -> None:
    outcome = ingested.outcomes["mid_gop_ts"]
    assert frame_index_of(outcome.frames[0]) == 40 % 16  # the first keyframe that survived the cut
    assert outcome.timestamps[0] > 1.0 and outcome.points >= 1


@pytest.mark.parametrize("case", ["h264_annexb", "hevc_annexb", "h264_annexb_mvc"])
def test_raw_elementary_stream_is_indexed_at_the_times_of_its_frames(ingested: Ingested, case: str) -> None:
    """No timestamps in the file: its 10 fps (from the SPS) times the frames, so clips cover the 12 s it plays."""
    outcome = ingested.outcomes[case]
    np.testing.assert_allclose(outcome.timestamps, np.arange(12), atol=1e-6)
    assert [frame_index_of(f) for f in outcome.frames] == [(10 * k) % 16 for k in range(12)]
    layout = ingested.runtime.context.layout
    plan = read_clip_plan(layout, COLLECTION, outcome.job.video_id)
    assert plan is not None and [(c.start_s, c.end_s) for c in plan] == [(0.0, 10.0), (2.0, 12.0)]
    assert outcome.job.video_file.endswith(Path(outcome.job.source).suffix)  # stored under its own name
