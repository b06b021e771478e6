"""Distributed mode: the Celery app's configuration, and a real worker killed mid-task on the local Redis."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest
from celery.app.backends import by_url
from celery.backends.redis import RedisBackend
from typer.testing import CliRunner

if TYPE_CHECKING:
    from worker.runtime import DistributedRuntime

from videoseek.jobs import JobStage, JobStore
from videoseek.settings import Settings, get_settings, load_settings
from worker.celery_app import QueueDepths, WorkerConfigError, build_celery_app, celery_config
from worker.names import (
    QUEUE_EMBED,
    QUEUE_INGEST,
    QUEUES,
    TASK_DECODE,
    TASK_EMBED,
    TASK_PLAYBACK,
    TASK_RETRAIN,
)


def test_config_redelivers_tasks_of_dead_workers_and_keeps_queues_apart() -> None:
    settings = load_settings(redis_url="redis://127.0.0.1:6379/13")
    conf = celery_config(settings)
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"]
    assert conf["worker_prefetch_multiplier"] == 1
    assert conf["task_serializer"] == conf["result_serializer"] == "json" and conf["accept_content"] == [
        "json"
    ]
    backend, backend_url = by_url(conf["result_backend"])
    assert conf["broker_url"] == backend_url == "redis://127.0.0.1:6379/13"
    assert issubclass(backend, RedisBackend)  # Celery's, without a result subscription per task sent
    assert conf["task_soft_time_limit"] < conf["task_time_limit"]
    assert conf["broker_transport_options"]["visibility_timeout"] == settings.worker.visibility_timeout_s
    assert conf["broker_transport_options"]["global_keyprefix"].startswith(settings.worker.redis_prefix)
    queues = {q.name: q for q in conf["task_queues"]}
    assert set(queues) == set(QUEUES) == {"ingest", "embed", "train"}
    # A message routed to one queue must reach only that queue.
    assert len({(q.exchange.name, q.routing_key) for q in queues.values()}) == len(queues)
    assert conf["task_routes"][TASK_DECODE]["queue"] == QUEUE_INGEST
    assert conf["task_routes"][TASK_EMBED]["queue"] == QUEUE_EMBED
    assert conf["task_routes"][TASK_PLAYBACK]["queue"] == QUEUE_INGEST  # transcoding is CPU work


def test_workers_wait_long_on_redis_and_the_api_briefly() -> None:
    settings = load_settings(redis_url="redis://127.0.0.1:6379/13", worker={"api_redis_timeout_s": 1.5})
    for process_settings, timeout_s in ((settings, 30.0), (settings.for_api(), 1.5)):
        conf = celery_config(process_settings)
        transport = conf["broker_transport_options"]
        assert conf["redis_socket_timeout"] == transport["socket_timeout"] == timeout_s
        assert conf["broker_connection_timeout"] == transport["socket_connect_timeout"] <= timeout_s


def test_by_default_a_dead_workers_task_comes_back_within_minutes_and_live_workers_renew_theirs() -> None:
    from worker.tasks import TASK_REINDEX, TASK_RETRAIN
    from worker.unacked_heartbeat import (
        UNACKED_INDEX_KEY,
        UnackedHeartbeatStep,
        heartbeat_for,
        heartbeat_interval_s,
    )

    settings = load_settings(redis_url="redis://127.0.0.1:6379/13")
    transport = celery_config(settings)["broker_transport_options"]
    # Not the longest task (an hour and more): how long a killed worker's message waits before another worker
    # gets it. That is safe only because every live worker renews the messages it holds, several times per
    # timeout, in its main process (a worker bootstep), in the sorted set the Redis transport sweeps.
    assert transport["visibility_timeout"] == settings.worker.visibility_timeout_s <= 600
    assert settings.worker.visibility_timeout_s < settings.worker.task_time_limit_s
    assert transport["unacked_index_key"] == UNACKED_INDEX_KEY
    app = build_celery_app(settings)
    assert UnackedHeartbeatStep in app.steps["worker"]
    heartbeat = heartbeat_for(app.conf)
    assert heartbeat._key == transport["global_keyprefix"] + UNACKED_INDEX_KEY
    assert heartbeat._interval_s == heartbeat_interval_s(300) == 60
    # Admin tasks are acknowledged when they start, so however long they run they are never redelivered.
    assert not app.tasks[TASK_REINDEX].acks_late and not app.tasks[TASK_RETRAIN].acks_late


@pytest.mark.redis
def test_the_heartbeat_keeps_a_held_message_from_the_sweep_and_never_revives_an_acked_one(
    redis_url: str, redis_prefix: str
) -> None:
    """kombu's own sweep (restore_visible) on the broker layout the heartbeat renews: no worker, no waiting."""
    import redis
    from kombu import Exchange, Queue

    from worker.unacked_heartbeat import renew

    settings = load_settings(
        redis_url=redis_url, worker={"redis_prefix": redis_prefix, "visibility_timeout_s": 60}
    )
    app, depths = build_celery_app(settings), QueueDepths(settings)
    transport = app.conf.broker_transport_options
    key = transport["global_keyprefix"] + transport["unacked_index_key"]
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    for job in ("held", "abandoned", "acked"):
        app.send_task(TASK_DECODE, args=[job])
    with app.connection_for_read() as connection:
        channel = connection.channel()
        queue = Queue(QUEUE_INGEST, Exchange(QUEUE_INGEST, type="direct"), routing_key=QUEUE_INGEST)(channel)
        messages = {}
        for _ in range(3):
            message = queue.get(no_ack=False)  # delivered: now in the unacked index, as a worker holds it
            assert message is not None
            args, _kwargs, _embed = message.decode()  # Celery's message body: the task's job id
            messages[args[0]] = message
        assert depths(QUEUE_INGEST) == 0 and client.zcard(key) == 3
        tags = {name: str(m.delivery_tag) for name, m in messages.items()}
        client.zadd(key, dict.fromkeys(tags.values(), time.time() - 120))  # delivered 2 min ago: past 60 s
        messages["acked"].ack()

        assert renew(client, key, [tags["held"], tags["acked"]]) == 1  # the acked one is gone for good
        assert client.zscore(key, tags["acked"]) is None
        channel.qos.restore_visible(num=10, interval=1)  # what every worker's event loop runs

        assert depths(QUEUE_INGEST) == 1  # the abandoned message is back on its queue ...
        assert client.zscore(key, tags["abandoned"]) is None
        assert client.zscore(key, tags["held"]) is not None  # ... the renewed one is still with its worker
        messages["held"].ack()
    client.close()


def test_building_the_app_needs_redis_and_loads_no_model() -> None:
    with pytest.raises(WorkerConfigError, match="VIDEOSEEK_REDIS_URL"):
        celery_config(load_settings())
    code = (
        "import sys; from videoseek.settings import load_settings;"
        "from worker.celery_app import build_celery_app;"
        "app = build_celery_app(load_settings(redis_url='redis://127.0.0.1:6379/13')); app.loader.import_default_modules();"
        "t = app.tasks['videoseek.ingest.embed']; assert t.acks_late and t.reject_on_worker_lost, t;"
        "assert 'torch' not in sys.modules and 'av' not in sys.modules, 'heavy import in the Celery parent'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.redis
def test_queue_depths_count_waiting_messages_of_every_priority() -> None:
    import uuid

    import redis

    prefix = f"videoseek-test-{uuid.uuid4().hex[:8]}:"
    settings = load_settings(redis_url="redis://127.0.0.1:6379/13", worker={"redis_prefix": prefix})
    app, depths = build_celery_app(settings), QueueDepths(settings)
    try:
        assert depths(QUEUE_INGEST) == 0  # a queue Redis has never seen
        app.send_task(TASK_DECODE, args=["job-1"])
        app.send_task(TASK_DECODE, args=["job-2"], priority=6)  # kept in another list by kombu
        assert (depths(QUEUE_INGEST), depths(QUEUE_EMBED)) == (2, 0)
    finally:
        server = redis.Redis.from_url("redis://127.0.0.1:6379/13")
        leftovers = list(server.scan_iter(match=f"{prefix}*"))
        if leftovers:
            server.delete(*leftovers)
    unreachable = QueueDepths(load_settings(redis_url="redis://127.0.0.1:9/0"))
    with pytest.raises(redis.ConnectionError):  # /metrics turns this into NaN, never a failed scrape
        unreachable(QUEUE_INGEST)


def test_worker_command_refuses_to_start_without_redis() -> None:
    from videoseek.cli.app import app

    result = CliRunner().invoke(app, ["worker"])
    assert result.exit_code == 2 and "VIDEOSEEK_REDIS_URL" in result.output


def test_worker_command_refuses_the_embedded_store_in_distributed_mode_as_serve_does(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import typer

    from videoseek.cli.app import app
    from videoseek.cli.serve_cmd import check_serve_settings

    monkeypatch.setenv("VIDEOSEEK_REDIS_URL", "redis://127.0.0.1:6379/13")
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["worker", "--pool", "solo"])
    assert result.exit_code == 2 and "cannot share the embedded store" in result.output
    with pytest.raises(typer.Exit):
        check_serve_settings(load_settings(), "127.0.0.1")
    serve_message = capsys.readouterr().err.strip()
    assert serve_message and serve_message in " ".join(result.output.split())
    # The single-box opt-in still refuses a pool that would open the store from several processes.
    result = CliRunner().invoke(app, ["worker", "--allow-embedded-store", "--concurrency", "2"])
    assert result.exit_code == 2 and "one worker process" in result.output


def _eager_decode(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, decode: Callable[[object, str], None], max_retries: int
) -> tuple[Any, Any, Any]:
    """A Celery app that runs tasks eagerly, one stored job, and ``decode`` in place of the decode step."""
    from videoseek.jobs import Job, SqliteJobStore
    from videoseek.pairs_sqlite import SqlitePairStore
    from worker import ingest_steps

    settings = load_settings(redis_url="redis://127.0.0.1:6379/13", worker={"max_retries": max_retries})
    app = build_celery_app(settings)
    app.conf.task_always_eager = True
    jobs = SqliteJobStore(tmp_path / "jobs.sqlite3")
    job = jobs.create(Job("j1", "films", "ab" * 32, "a.mp4", "x.mp4"))
    pairs = SqlitePairStore(tmp_path / "pairs.sqlite3")  # a failed job's pairs are removed with it
    app.process.use_context(SimpleNamespace(jobs=jobs, pairs=pairs))  # type: ignore[arg-type]
    monkeypatch.setattr(ingest_steps, "decode_video", decode)
    return app, jobs, job


def test_task_retries_transient_errors_then_fails_the_job(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Eagerly applied: a store outage is retried max_retries times, then the job fails with the reason."""
    from videoseek.ingest import pipeline

    calls: list[str] = []

    def unavailable(_ctx: object, job_id: str) -> None:
        calls.append(job_id)
        raise pipeline.TransientError("vector store unavailable: connection refused")

    app, jobs, job = _eager_decode(monkeypatch, tmp_path, unavailable, max_retries=2)
    app.tasks[TASK_DECODE].apply(args=[job.job_id])
    failed = jobs.require(job.job_id)
    assert calls == ["j1"] * 3  # the first try and 2 retries
    assert failed.stage is JobStage.FAILED and "gave up after 2 retries" in (failed.reason or "")
    assert "connection refused" in (failed.reason or "")


@pytest.mark.parametrize("error", ["ConnectionError", "TimeoutError"])
def test_job_store_redis_errors_are_retried_with_backoff_and_do_not_fail_the_job(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, error: str
) -> None:
    """Redis (the job state) dropping a connection mid-task is a retry, never a failed job."""
    import redis

    from worker import retry

    calls: list[str] = []
    backoffs: list[int] = []
    exc_type = getattr(redis, error)

    def flaky(ctx: object, job_id: str) -> None:  # what the job store raises while Redis restarts
        calls.append(job_id)
        if len(calls) <= 2:
            raise exc_type("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    def backoff(**kw: int) -> int:
        backoffs.append(kw["retries"])
        return 1

    app, jobs, job = _eager_decode(monkeypatch, tmp_path, flaky, max_retries=3)
    monkeypatch.setattr(retry, "get_exponential_backoff_interval", backoff)
    result = app.tasks[TASK_DECODE].apply(args=[job.job_id])
    assert calls == ["j1"] * 3 and backoffs == [0, 1]  # two retries, each after an exponential backoff
    assert result.get() == "queued" and jobs.require(job.job_id).stage is JobStage.QUEUED
    jobs.close()


# ------------------------------------------------------------------------------------- the fault test


def _start_worker(log: Path, queues: str = "ingest,embed") -> subprocess.Popen[bytes]:
    # Prefork with one pool process: the model loads after fork, and the decoder sandbox runs from a pool child.
    cmd = [
        sys.executable,
        "-m",
        "videoseek",
        "worker",
        "--pool",
        "prefork",
        "--concurrency",
        "1",
        "--queues",
        queues,
        "--allow-embedded-store",  # no Qdrant server here: this one worker process owns the Edge store
    ]
    with log.open("ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _kill(worker: subprocess.Popen[bytes], sig: int) -> None:
    """SIGKILL: the whole worker dies at once (main process, pool process, decoder fork server).
    SIGTERM: Celery's warm shutdown, asked of the main process."""
    if worker.poll() is None:
        if sig == signal.SIGKILL:
            os.killpg(worker.pid, sig)
        else:
            worker.send_signal(sig)
    try:
        worker.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
    with contextlib.suppress(ProcessLookupError):  # stragglers of its group (decoder fork server)
        os.killpg(worker.pid, signal.SIGKILL)
    _wait_until_group_is_gone(worker.pid)


def _wait_until_group_is_gone(pgid: int, timeout: float = 30) -> None:
    """A signalled pool process still holds the Qdrant Edge lock until the kernel has torn it down: without
    this wait, the test's own next open of the store raced the dying worker (seen in CI as WouldBlock)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        if _only_zombies_left(pgid):  # exited (files closed, locks released), waiting to be reaped
            return
        time.sleep(0.02)
    raise AssertionError(f"the worker's process group {pgid} is still alive after {timeout}s")


def _only_zombies_left(pgid: int) -> bool:
    # Every thread, not just each process: a multi-threaded process's main thread shows as a zombie while its
    # other threads (Qdrant Edge's own) are still exiting and still hold its files (seen in CI as WouldBlock).
    for stat in Path("/proc").glob("[0-9]*/task/[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # "pid (comm) state ppid pgrp ...": comm may hold spaces, so split after its closing parenthesis
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                return False
    return True


def _runtime(settings: Settings) -> DistributedRuntime:
    """What the API or the CLI would submit through, in this process."""
    from videoseek.cli.runtime import training_work
    from worker.runtime import DistributedRuntime

    return DistributedRuntime(settings, training_work())


def _wait_for(jobs: JobStore, job_id: str, stages: set[JobStage], timeout: float, log: Path) -> JobStage:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stage = jobs.require(job_id).stage
        if stage in stages:
            return stage
        time.sleep(0.02)
    raise AssertionError(f"job never reached {stages} (now {stage}); worker log:\n{log.read_text()[-3000:]}")


@pytest.mark.redis
def test_task_of_a_killed_worker_is_redelivered_and_indexes_the_video_once(
    distributed: Settings, tmp_path: Path
) -> None:
    from videoseek.collections import create_collection
    from videoseek.ingest.pipeline import read_clip_plan
    from videoseek.layout import DataLayout
    from videoseek.toy.generate import generate_videos

    log = tmp_path / "workers.log"
    first = _start_worker(log)  # it boots while we prepare; it opens the store only for its first task
    runtime = _runtime(distributed)
    try:
        generate_videos(tmp_path / "toy", 1, seed=5, domain="A", durations_s=[30])
        create_collection(runtime.context, "films")
        submitted = runtime.submit_ingest("films", tmp_path / "toy" / "videos" / "00000.mp4")
        runtime.context.release_store()  # Qdrant Edge: one process at a time (the worker retries until then)
        jobs = runtime.context.jobs
        _wait_for(jobs, submitted.job_id, {JobStage.EMBEDDING, JobStage.DONE, JobStage.FAILED}, 40, log)
    finally:
        _kill(first, signal.SIGKILL)
    killed_at = jobs.require(submitted.job_id)
    assert killed_at.stage is JobStage.EMBEDDING, killed_at  # died mid-task, not after it

    second = _start_worker(log)
    try:
        done = _wait_for(jobs, submitted.job_id, {JobStage.DONE, JobStage.FAILED}, 45, log)
    finally:
        _kill(second, signal.SIGTERM)
    job = jobs.require(submitted.job_id)
    assert done is JobStage.DONE, (job, log.read_text()[-3000:])
    # the embed task itself was redelivered: embedding started twice, with no decoding in between (decoding
    # would have started the count of the embedding step again at 1)
    assert job.attempts == 2
    plan = read_clip_plan(DataLayout(distributed.data_dir), "films", job.video_id)
    assert plan is not None and job.clips == len(plan) == 5  # 30 s: windows at 0, 5, 10, 15 and 20 s
    store = runtime.context.store
    assert store.count("films") == store.count("films", job.video_id) == len(plan)
    assert store.list_videos("films") == [job.video_id]
    runtime.close()


@pytest.mark.redis
def test_a_task_running_for_several_visibility_timeouts_on_a_live_worker_is_delivered_once(
    distributed_patient: Settings, tmp_path: Path
) -> None:
    """The worker keeps renewing the message of a task that runs on; only a dead worker's message comes back."""
    import redis

    from videoseek.collections import create_collection
    from videoseek.toy.generate import generate_videos

    settings = distributed_patient
    assert settings.redis_url is not None
    timeout_s = settings.worker.visibility_timeout_s
    transport = celery_config(settings)["broker_transport_options"]
    index = transport["global_keyprefix"] + transport["unacked_index_key"]
    client, depths = redis.Redis.from_url(settings.redis_url, decode_responses=True), QueueDepths(settings)
    runtime = _runtime(settings)
    jobs = runtime.context.jobs
    log = tmp_path / "workers.log"
    worker = _start_worker(log)
    try:
        generate_videos(tmp_path / "toy", 1, seed=5, domain="A", durations_s=[8])
        create_collection(runtime.context, "films")
        # Held here, the collection's write lock keeps the embed task waiting in its indexing step for as
        # long as this test wants: a task running far longer than the visibility timeout, on a live worker.
        with runtime.context.locks.hold("films"):
            job_id = runtime.submit_ingest("films", tmp_path / "toy" / "videos" / "00000.mp4").job_id
            runtime.context.release_store()  # Qdrant Edge: one process at a time (the worker retries until then)
            assert _wait_for(jobs, job_id, {JobStage.INDEXING, JobStage.FAILED}, 90, log) is JobStage.INDEXING
            (tag,) = client.zrange(index, 0, -1)  # the embed task's message: the decode one was acked
            delivered = score = float(client.zscore(index, tag) or 0)
            deadline = time.monotonic() + 20 * timeout_s
            while score < delivered + 2 * timeout_s:  # renewed past two timeouts after it was delivered
                renewed = client.zscore(index, tag)
                assert renewed is not None, (
                    f"the sweep took back the message of a live worker:\n{log.read_text()}"
                )
                assert depths(QUEUE_EMBED) == 0  # ... and nobody else was handed a copy
                assert time.monotonic() < deadline, f"never renewed:\n{log.read_text()[-3000:]}"
                score = float(renewed)
                time.sleep(0.1)
        done = _wait_for(jobs, job_id, {JobStage.DONE, JobStage.FAILED}, 60, log)
    finally:
        _kill(worker, signal.SIGTERM)
    job = jobs.require(job_id)
    assert done is JobStage.DONE and job.attempts == 1, (job, log.read_text()[-3000:])  # embedded once
    assert depths(QUEUE_EMBED) == depths(QUEUE_INGEST) == 0 and client.zcard(index) == 0
    assert runtime.context.store.count("films") == job.clips
    runtime.close()
    client.close()


@pytest.mark.redis
def test_an_embed_worker_embeds_the_decoded_videos_of_several_jobs_in_one_batch(
    distributed_defaults: Settings, tmp_path: Path
) -> None:
    from videoseek.collections import create_collection
    from videoseek.ingest.pipeline import read_clip_plan
    from videoseek.layout import DataLayout
    from videoseek.toy.generate import generate_videos
    from worker.embed_backlog import EmbedBacklog

    settings = distributed_defaults
    assert settings.redis_url is not None
    log = tmp_path / "workers.log"
    generate_videos(tmp_path / "toy", 3, seed=6, domain="A", durations_s=[8])
    runtime = _runtime(settings)
    create_collection(runtime.context, "films")
    job_ids = [
        runtime.submit_ingest("films", path).job_id
        for path in sorted((tmp_path / "toy" / "videos").glob("*.mp4"))
    ]
    runtime.context.release_store()  # Qdrant Edge: one process at a time
    backlog = EmbedBacklog.from_url(settings.redis_url, settings.worker.redis_prefix)
    jobs = runtime.context.jobs
    decoder = _start_worker(log, queues="ingest")  # decodes all three; nobody embeds yet
    try:
        deadline = time.monotonic() + 90
        while sorted(backlog.waiting()) != sorted(job_ids):
            assert time.monotonic() < deadline, (backlog.waiting(), log.read_text()[-3000:])
            time.sleep(0.1)
    finally:
        _kill(decoder, signal.SIGTERM)
    embedder = _start_worker(log, queues="embed")
    try:
        for job_id in job_ids:
            assert _wait_for(jobs, job_id, {JobStage.DONE, JobStage.FAILED}, 90, log) is JobStage.DONE
    finally:
        _kill(embedder, signal.SIGTERM)
    # The first embed task took the other two jobs into its batch; their own tasks found them done.
    assert "embedding 3 videos together" in log.read_text()
    layout = DataLayout(settings.data_dir)
    total = 0
    for job_id in job_ids:
        job = jobs.require(job_id)
        plan = read_clip_plan(layout, "films", job.video_id)
        assert plan is not None and job.clips == len(plan) and job.attempts == 1, job
        total += job.clips
    assert runtime.context.store.count("films") == total and backlog.waiting() == []
    backlog.close()
    runtime.close()


@pytest.mark.redis
def test_admin_tasks_pass_their_request_through_and_hold_the_collections_slot_while_they_run(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, redis_prefix: str
) -> None:
    """Eagerly applied: the JSON-serialised request comes back whole, the result names its kind, and a task
    meeting another one's slot on its collection refuses to run."""
    from training import retrain
    from videoseek.reindex import ReindexError
    from videoseek.retraining import RetrainError, RetrainRequest
    from worker import admin_slot
    from worker.admin_state import AdminState
    from worker.redis_client import redis_client

    settings = load_settings(redis_url=redis_url, worker={"redis_prefix": redis_prefix})
    slots = AdminState.on(redis_client(redis_url, 5.0, decode_responses=True), redis_prefix).slots
    seen: list[tuple[str, RetrainRequest, str | None]] = []

    def fake_retrain(context: object, name: str, request: RetrainRequest, **_: object) -> dict[str, Any]:
        time.sleep(1.5)  # longer than the slot's lease: only its renewal keeps it
        seen.append((name, request, slots.holder(name)))
        return {"collection": name, "adapter_version": "v1"}

    monkeypatch.setattr(retrain, "retrain_collection", fake_retrain)
    monkeypatch.setattr(admin_slot, "SLOT_LEASE_S", 1)
    app = build_celery_app(settings)
    app.process.use_context(SimpleNamespace())  # type: ignore[arg-type]  # the fake retrain needs none
    task = app.tasks[TASK_RETRAIN]
    request = RetrainRequest(data="captions.jsonl", method="vision", epochs=2, lr=0.01, allow_missing=True)
    assert "from_current" not in request.to_dict()  # at its default: a worker one release older reads it
    with pytest.raises(RetrainError, match="older than the API"):
        RetrainRequest.from_dict({**request.to_dict(), "a_later_setting": 1})
    outcome = task.apply(args=["films", request.to_dict()], task_id="films." + "1" * 32)
    assert outcome.get() == {"collection": "films", "adapter_version": "v1", "kind": "retrain"}
    assert seen == [("films", request, "films." + "1" * 32)]  # ran holding the slot ...
    assert slots.holder("films") is None  # ... and freed it

    assert slots.take("films", "films." + "2" * 32) == "films." + "2" * 32  # another task holds it
    busy = task.apply(args=["films", request.to_dict()], task_id="films." + "3" * 32)
    assert isinstance(busy.result, ReindexError) and "busy with task films.222" in str(busy.result)
    assert len(seen) == 1 and slots.holder("films") == "films." + "2" * 32
    # A task that crashed holding its lease frees the collection when the lease runs out.
    assert slots.take("cars", "crashed-task", 1) == "crashed-task"
    time.sleep(1.2)
    assert slots.holder("cars") is None


def test_a_cancel_flag_that_cannot_be_read_does_not_stop_the_task(caplog: pytest.LogCaptureFixture) -> None:
    """A Redis failover during hours of training costs a log line, not the run."""
    import redis

    from worker.cancel_flags import CancelFlags

    nowhere = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)  # nothing listens there
    check = CancelFlags(nowhere, "p:", "s:").check_for("films." + "0" * 32)
    check()
    assert "cannot read its cancel flag" in caplog.text
