"""Distributed mode: once an embed task has indexed a video browsers cannot play, it queues the playback task
(on the CPU ingest queue), which writes the copy; the tasks run in-process on the real Redis job store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from video_factory import write_video

from videoseek.jobs import JobStage
from videoseek.settings import Settings
from worker.names import TASK_EMBED, TASK_PLAYBACK

pytestmark = pytest.mark.redis


def test_an_indexed_avi_gets_its_playback_copy_from_the_task_the_embed_task_sends(
    distributed_defaults: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from videoseek.collections import create_collection
    from videoseek.ingest.pipeline import decode_video
    from videoseek.ingest.submit import submit_file
    from worker.celery_app import build_celery_app
    from worker.context import distributed_context

    ctx = distributed_context(distributed_defaults)
    try:
        create_collection(ctx, "films")
        avi = write_video(tmp_path / "old.avi", codec="mpeg4", n=20, rate=10, size=(64, 48), fmt="avi")
        mp4 = write_video(tmp_path / "new.mp4", n=20, rate=10, size=(64, 48))
        jobs = [submit_file(ctx, lambda _: None, "films", path).job_id for path in (avi, mp4)]
        for job_id in jobs:
            assert decode_video(ctx, job_id) is not None
        app = build_celery_app(distributed_defaults)
        app.process.use_context(ctx)
        sent: list[tuple[str, list[Any]]] = []
        monkeypatch.setattr(app, "send_task", lambda name, args: sent.append((name, args)))
        for job_id in jobs:
            assert app.tasks[TASK_EMBED].apply(args=[job_id]).get() == "done"
        assert sent == [(TASK_PLAYBACK, [jobs[0]])]  # the MP4 plays as it is
        assert ctx.jobs.require(jobs[0]).playback == "pending"
        assert app.tasks[TASK_PLAYBACK].apply(args=[jobs[0]]).get() == "ready"
        job = ctx.jobs.require(jobs[0])
        assert job.stage is JobStage.DONE and ctx.layout.playback_file("films", job.video_id).is_file()
        assert app.tasks[TASK_PLAYBACK].apply(args=[jobs[0]]).get() == "ready"  # again: nothing to do
    finally:
        ctx.close()
