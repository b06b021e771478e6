"""Browser playback: an upload browsers cannot play gets a copy they can (H.264 yuv420p in MP4, moov first,
size-capped), written after indexing; one they can play is left as it is; a copy that fails says why and leaves
the video indexed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import av
import pytest
from video_factory import write_video

from videoseek.cli.runtime import training_work
from videoseek.collections import create_collection, delete_video
from videoseek.ingest.playback import write_playback
from videoseek.jobs import Job, JobStage
from videoseek.runtime.embedded import EmbeddedRuntime
from videoseek.settings import load_settings
from videoseek.video import StreamInfo, VideoInfo, probe
from videoseek.video.browser_playback import playback_copy_reason
from videoseek.video.transcode import write_playback_copy


def _ingest(runtime: EmbeddedRuntime, *paths: Path) -> list[Job]:
    create_collection(runtime.context, "films")
    runtime.start()
    results = [runtime.submit_ingest("films", path) for path in paths]
    assert runtime.runner.join(timeout=180), "ingest (and its playback copies) did not finish"
    return [runtime.context.jobs.require(r.job_id) for r in results]


def _box_order(path: Path) -> list[bytes]:
    """The top-level MP4 box types, in file order."""
    data, order, at = path.read_bytes(), [], 0
    while at + 8 <= len(data):
        size = int.from_bytes(data[at : at + 4], "big")
        order.append(data[at + 4 : at + 8])
        if size < 8:
            break
        at += size
    return order


def test_an_avi_gets_a_browser_playable_copy_after_it_is_indexed(
    runtime: EmbeddedRuntime, tmp_path: Path
) -> None:
    avi = write_video(tmp_path / "old-camera.avi", codec="mpeg4", n=40, rate=10, size=(320, 240), fmt="avi")
    (job,) = _ingest(runtime, avi)
    assert (job.stage, job.playback) == (JobStage.DONE, "ready"), job
    copy = runtime.context.layout.playback_file("films", job.video_id)
    with av.open(str(copy)) as container:
        video = container.streams.video[0]
        assert (container.format.name.split(",")[0], video.codec_context.name) == ("mov", "h264")
        assert (video.codec_context.pix_fmt, video.width, video.height) == ("yuv420p", 320, 240)
        assert container.duration / av.time_base == pytest.approx(4.0, abs=0.15)  # same times as the source
    boxes = _box_order(copy)
    assert boxes.index(b"moov") < boxes.index(b"mdat")  # faststart: a browser can start before the end
    assert runtime.context.layout.video_file("films", job.video_id).suffix == ".avi"  # the upload stays


def test_an_h264_mp4_is_played_as_it_was_uploaded(runtime: EmbeddedRuntime, tmp_path: Path) -> None:
    mp4 = write_video(tmp_path / "phone.mp4", n=20, rate=10, size=(64, 48))
    (job,) = _ingest(runtime, mp4)
    assert (job.stage, job.playback) == (JobStage.DONE, "original")
    assert not runtime.context.layout.playback_file("films", job.video_id).exists()


def test_with_copies_off_the_job_says_the_video_needs_one(
    runtime: EmbeddedRuntime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest = runtime.context.settings.ingest.model_copy(update={"playback_copies": False})
    monkeypatch.setattr(runtime.context.settings, "ingest", ingest)
    avi = write_video(tmp_path / "a.avi", codec="mpeg4", n=20, rate=10, size=(64, 48), fmt="avi")
    (job,) = _ingest(runtime, avi)
    assert (job.stage, job.playback) == (JobStage.DONE, "disabled")
    assert not runtime.context.layout.playback_file("films", job.video_id).exists()


def test_a_copy_that_cannot_be_written_leaves_the_video_indexed_and_says_why(
    runtime: EmbeddedRuntime, tmp_path: Path
) -> None:
    avi = write_video(tmp_path / "a.avi", codec="mpeg4", n=20, rate=10, size=(64, 48), fmt="avi")
    (job,) = _ingest(runtime, avi)
    context = runtime.context
    stored = context.layout.video_file("films", job.video_id)
    assert stored is not None
    stored.write_bytes(b"RIFF" + bytes(2000))  # damaged on disk after indexing
    context.layout.playback_file("films", job.video_id).unlink()
    context.jobs.update(job.job_id, playback="pending")
    after = write_playback(context, job.job_id)
    assert after is not None and (after.stage, after.playback) == (JobStage.DONE, "failed")
    assert any("no browser-playable copy" in p for p in after.problems), after.problems
    assert context.store.count("films", job.video_id) == job.clips  # still searchable


def test_a_copy_not_written_before_a_stop_is_written_at_the_next_start(
    runtime: EmbeddedRuntime, tmp_path: Path
) -> None:
    avi = write_video(tmp_path / "a.avi", codec="mpeg4", n=20, rate=10, size=(64, 48), fmt="avi")
    (job,) = _ingest(runtime, avi)
    layout = runtime.context.layout
    layout.playback_file("films", job.video_id).unlink()
    runtime.context.jobs.update(job.job_id, playback="pending")  # as a stop mid-copy leaves it
    runtime.close()
    again = EmbeddedRuntime(runtime.context.settings, training_work())
    try:
        again.start()
        assert again.runner.join(timeout=120)
        assert again.context.jobs.require(job.job_id).playback == "ready"
        assert layout.playback_file("films", job.video_id).is_file()
    finally:
        again.close()


def test_deleting_a_video_removes_its_copy(runtime: EmbeddedRuntime, tmp_path: Path) -> None:
    avi = write_video(tmp_path / "a.avi", codec="mpeg4", n=20, rate=10, size=(64, 48), fmt="avi")
    (job,) = _ingest(runtime, avi)
    copy = runtime.context.layout.playback_file("films", job.video_id)
    assert copy.is_file()
    delete_video(runtime.context, "films", job.video_id)
    assert not copy.exists()


def test_a_copy_is_upright_and_within_the_size_cap(tmp_path: Path) -> None:
    """4:4:4 H.264 (not for browsers) that is stored sideways: the copy is turned upright and scaled down."""
    source = write_video(
        tmp_path / "sideways.mp4", n=10, rate=10, size=(640, 480), pix_fmt="yuv444p", rotation=90
    )
    limits = load_settings(data_dir=tmp_path / "data", ingest={"playback_max_side": 320}).ingest
    info = probe(source, limits)
    assert playback_copy_reason(info) is not None
    written = write_playback_copy(source, tmp_path / "copy.mp4", limits)
    assert (written.width, written.height) == (240, 320)  # upright (portrait), longest side 320
    with av.open(str(tmp_path / "copy.mp4")) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height, stream.codec_context.pix_fmt) == (240, 320, "yuv420p")
    assert not list(tmp_path.glob(".copy.mp4.*"))  # no partial file left


def _info(**changes: object) -> VideoInfo:
    base = VideoInfo(
        size_bytes=1000,
        container_format="mov,mp4,m4a,3gp,3g2,mj2",
        streams=(StreamInfo(0, "video", "h264", 640, 360), StreamInfo(1, "audio", "aac")),
        video_stream_index=0,
        duration_s=10.0,
        frame_rate=25.0,
        width=640,
        height=360,
        rotation=0,
        codec="h264",
        pix_fmt="yuv420p",
        has_audio=True,
        frame_count=250,
        start_time_s=0.0,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({}, None),
        ({"pix_fmt": "yuvj420p"}, None),
        (
            {
                "container_format": "matroska,webm",
                "codec": "vp9",
                "streams": (StreamInfo(0, "video", "vp9"),),
            },
            None,
        ),
        ({"codec": "av1", "pix_fmt": "yuv420p10le", "streams": (StreamInfo(0, "video", "av1"),)}, None),
        ({"container_format": "avi"}, "AVI container"),
        ({"container_format": "mpegts"}, "MPEG-TS container"),
        ({"container_format": "mpeg"}, "MPEG-PS container"),
        ({"container_format": "flv"}, "FLV container"),
        ({"container_format": "ogg", "codec": "theora"}, "OGG container"),
        ({"container_format": "matroska,webm"}, "Matroska container"),  # H.264 in MKV
        ({"container_format": "matroska,webm", "codec": "mpeg2video"}, "Matroska container"),
        ({"codec": "hevc"}, "hevc video"),
        ({"pix_fmt": "yuv444p"}, "yuv444p pixel format"),  # H.264 High 4:4:4
        ({"pix_fmt": "yuv420p10le"}, "yuv420p10le pixel format"),  # 10-bit H.264
        ({"streams": (StreamInfo(0, "video", "h264"), StreamInfo(1, "audio", "ac3"))}, "ac3 audio"),
        ({"width": 8192, "height": 4320}, "over what browsers decode"),
        ({"container_format": "gif", "codec": "gif"}, "GIF container"),
    ],
)
def test_what_browsers_play_as_it_is(changes: dict[str, object], why: str | None) -> None:
    reason = playback_copy_reason(_info(**changes))
    assert (reason is None) == (why is None), reason
    if why is not None:
        assert reason is not None and why in reason
