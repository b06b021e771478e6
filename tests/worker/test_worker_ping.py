"""``videoseek worker --ping``: the compose healthcheck of a worker, Celery's remote-control ping of its node."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

READY_TIMEOUT_S = 180.0  # how long a worker may take to start on a busy machine (a guard, not a measurement)


def _env(tmp_path: Path, redis_url: str, redis_prefix: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDEOSEEK_")}
    env.update(
        VIDEOSEEK_REDIS_URL=redis_url,
        VIDEOSEEK_WORKER__REDIS_PREFIX=redis_prefix,
        VIDEOSEEK_DATA_DIR=str(tmp_path / "data"),
        VIDEOSEEK_MODEL="toy",
        VIDEOSEEK_MODEL_DOWNLOAD="never",
        OMP_NUM_THREADS="1",
    )
    return env


def _ping(env: dict[str, str], queues: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "videoseek", "worker", "--queues", queues, "--ping"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.redis
def test_ping_answers_for_this_hosts_running_worker_of_those_queues_only(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    env = _env(tmp_path, redis_url, redis_prefix)
    before = _ping(env, "ingest")
    assert before.returncode == 1 and "no answer" in before.stderr  # nothing runs yet: unhealthy
    log = (tmp_path / "worker.log").open("wb")
    # The ingest queue loads no model; the embedded store is allowed for this one process (no Qdrant server here).
    command = [sys.executable, "-m", "videoseek", "worker", "--queues", "ingest", "--pool", "solo"]
    worker = subprocess.Popen(
        [*command, "--allow-embedded-store"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        answered = _ping(env, "ingest")
        while answered.returncode != 0 and worker.poll() is None and time.monotonic() < deadline:
            time.sleep(1)
            answered = _ping(env, "ingest")
        other_queues = _ping(env, "ingest,embed")
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        log.close()
    assert answered.returncode == 0, (answered.stderr, (tmp_path / "worker.log").read_text()[-3000:])
    assert answered.stdout.strip().startswith("videoseek-ingest@") and "pong" in answered.stdout
    assert other_queues.returncode == 1  # another node name: that worker does not run here
