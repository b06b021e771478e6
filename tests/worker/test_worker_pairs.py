"""Training pairs in distributed mode: a real Celery worker stores a video's subtitle cues in Redis and fits the
captions submitted with it; deleting the video, then the collection, removes them from Redis."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from video_factory import mux_subtitles, write_video

from videoseek.cli.runtime import training_work
from videoseek.collections import create_collection, delete_collection, delete_video
from videoseek.jobs import JobStage
from videoseek.pairs import PairDraft, iter_pairs
from videoseek.settings import Settings
from worker.redis_pairs import RedisPairStore
from worker.runtime import DistributedRuntime

pytestmark = pytest.mark.redis

SRT = "1\n00:00:00,500 --> 00:00:01,500\na red <i>ball</i>\n\n2\n00:00:02,000 --> 00:00:04,000\nrolls away\n"


def _worker(log: Path) -> subprocess.Popen[bytes]:
    """One worker on the ingest and embed queues, owning the Edge store (no Qdrant server here)."""
    cmd = [sys.executable, "-m", "videoseek", "worker", "--pool", "prefork", "--concurrency", "1"]
    cmd += ["--queues", "ingest,embed", "--allow-embedded-store"]
    with log.open("ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(worker: subprocess.Popen[bytes]) -> None:
    worker.send_signal(signal.SIGTERM)  # Celery's warm shutdown
    try:
        worker.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
    with contextlib.suppress(ProcessLookupError):  # the decoder's fork server, if it outlived its parent
        os.killpg(worker.pid, signal.SIGKILL)


def test_a_worker_stores_subtitles_and_fits_captions_in_redis_and_deletes_take_them(
    distributed_defaults: Settings, redis_prefix: str, tmp_path: Path
) -> None:
    (tmp_path / "a.srt").write_text(SRT)
    video = mux_subtitles(
        write_video(tmp_path / "v.mp4", n=30, rate=10), [tmp_path / "a.srt"], tmp_path / "v.mkv"
    )
    runtime = DistributedRuntime(distributed_defaults, training_work())
    ctx = runtime.context
    assert isinstance(ctx.pairs, RedisPairStore)
    log = tmp_path / "worker.log"
    worker = None
    try:
        create_collection(ctx, "films")
        drafts = [PairDraft.checked("caption", "a ball, then nothing", 1.0, 9.0)]
        submitted = runtime.submit_ingest("films", video, pairs=drafts)
        ctx.release_store()  # the worker opens the Edge store now (one process at a time)
        listed = [p.text for p in iter_pairs(ctx.pairs, "films")]
        assert listed == ["a ball, then nothing"]  # at once, in Redis
        worker = _worker(log)
        deadline = time.monotonic() + 120
        while ctx.jobs.require(submitted.job_id).stage not in (JobStage.DONE, JobStage.FAILED):
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
    finally:
        if worker is not None:
            _stop(worker)
    job = ctx.jobs.require(submitted.job_id)
    assert job.stage is JobStage.DONE, (job.reason, log.read_text()[-3000:])
    pairs = {p.text: p for p in iter_pairs(ctx.pairs, "films")}
    assert set(pairs) == {"a ball, then nothing", "a red ball", "rolls away"}
    assert pairs["a ball, then nothing"].end_s == 3.0  # cut to the video's length by the worker
    assert (pairs["a red ball"].kind, pairs["a red ball"].weak, pairs["a red ball"].start_s) == (
        "subtitle",
        True,
        0.5,
    )
    assert pairs["rolls away"].end_s == 3.0

    delete_video(ctx, "films", job.video_id)  # the worker has gone: this process may open the store
    assert list(iter_pairs(ctx.pairs, "films")) == []
    ctx.pairs.add([PairDraft.checked("caption", "left over").for_video("films", job.video_id)])
    delete_collection(ctx, "films")
    client = redis.Redis.from_url(distributed_defaults.redis_url or "", decode_responses=True)
    assert list(client.scan_iter(match=f"{redis_prefix}pairs:films:*")) == []  # no key of the collection left
    client.close()
    runtime.close()
