"""``videoseek flower``: Flower runs on videoseek's own Celery app, so it sees the workers under their key prefix."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from videoseek.cli.app import app

READY_TIMEOUT_S = 180.0  # a guard against a hang on a busy machine, not a measurement


def test_flower_refuses_embedded_mode_naming_the_setting() -> None:
    result = CliRunner().invoke(app, ["flower"])
    assert result.exit_code == 2 and "VIDEOSEEK_REDIS_URL" in result.output


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _get_until(url: str, proc: subprocess.Popen[bytes], done: object) -> httpx.Response | None:
    """GET ``url`` until ``done(response)`` holds or the process exits (None: it never did)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(httpx.HTTPError):
            response = httpx.get(url, timeout=10)
            if done(response):  # type: ignore[operator]
                return response
        time.sleep(1)
    return None


@pytest.mark.redis
def test_flower_answers_its_healthcheck_and_lists_the_running_worker(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    pytest.importorskip("flower", reason="Flower is the `monitor` extra: pip install -e '.[dev]'")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDEOSEEK_")}
    env.update(
        VIDEOSEEK_REDIS_URL=redis_url,
        VIDEOSEEK_WORKER__REDIS_PREFIX=redis_prefix,
        VIDEOSEEK_DATA_DIR=str(tmp_path / "data"),
        VIDEOSEEK_MODEL="toy",
        VIDEOSEEK_MODEL_DOWNLOAD="never",
        OMP_NUM_THREADS="1",
    )
    port = _free_port()
    logs = {name: (tmp_path / f"{name}.log").open("wb") for name in ("flower", "worker")}
    videoseek = [sys.executable, "-m", "videoseek"]
    flower = subprocess.Popen(
        [*videoseek, "flower", "--port", str(port)],
        env=env,
        stdout=logs["flower"],
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    worker = subprocess.Popen(
        [*videoseek, "worker", "--queues", "ingest", "--pool", "solo", "--allow-embedded-store"],
        env=env,
        stdout=logs["worker"],
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        health = _get_until(f"http://127.0.0.1:{port}/healthcheck", flower, lambda r: r.status_code == 200)
        # Flower's page of one worker inspects it (Celery's remote control) and is 404 until it answers.
        page = f"http://127.0.0.1:{port}/worker/videoseek-ingest@{socket.gethostname()}"
        listed = _get_until(page, flower, lambda r: r.status_code == 200)
    finally:
        _stop(worker)
        _stop(flower)
        for log in logs.values():
            log.close()
    output = (tmp_path / "flower.log").read_text()[-3000:]
    assert health is not None and health.text == "OK", output
    # Flower reached the worker through videoseek's prefixed keys: a stock `celery flower` would see none.
    assert listed is not None, output + (tmp_path / "worker.log").read_text()[-3000:]
