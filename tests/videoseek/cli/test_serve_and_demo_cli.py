"""``videoseek serve`` refuses unsafe or unworkable setups; ``videoseek demo`` comes up with a searchable collection."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from typer.testing import CliRunner

from videoseek.cli.app import app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_refuses_an_open_api_on_a_public_address() -> None:
    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "VIDEOSEEK_API_KEYS" in result.output and "--host 127.0.0.1" in result.output


def test_serve_refuses_redis_without_a_qdrant_server() -> None:
    result = CliRunner().invoke(app, ["serve"], env={"VIDEOSEEK_REDIS_URL": "redis://127.0.0.1:6379/0"})
    assert result.exit_code == 2 and "VIDEOSEEK_QDRANT__URL" in result.output


def test_serve_reports_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(
            app, ["serve", "--port", str(port), "--data-dir", str(tmp_path), "--model", "toy"]
        )
    assert result.exit_code == 2 and "in use" in result.output


def _wait_for_examples(proc: subprocess.Popen[str], log_path: Path, deadline_s: float) -> str:
    """The demo's output once it has printed its checked example queries (or exited)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline and proc.poll() is None and "Ctrl+C stops" not in log_path.read_text():
        time.sleep(0.25)
    return log_path.read_text()


def test_demo_serves_its_toy_collection_with_its_adapter_and_examples_that_work(tmp_path: Path) -> None:
    from videoseek.adapter import load_adapter
    from videoseek.toy.adapter import toy_adapter_dir

    adapter = toy_adapter_dir()
    assert adapter is not None, "the toy demo adapter is committed under videoseek/toy/weights/demo-adapter"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDEOSEEK_")}
    env["VIDEOSEEK_WORKER__QUEUE_SIZE"] = "1"  # fewer than the demo's videos: it queues them all at once
    log_path = tmp_path / "demo.log"
    log = log_path.open("w+")
    command = [sys.executable, "-m", "videoseek", "demo", "--data-dir", str(tmp_path / "demo")]
    command += ["--port", str(port), "--videos", "6", "--no-browser"]
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        output = _wait_for_examples(proc, log_path, 240)
        examples = [line.strip() for line in output.splitlines() if "?collection=demo&q=" in line]
        assert examples, output
        assert "of 6 demo captions find their own video first (the toy adapter)" in output, output
        assert "open to requests from this machine only" in output  # the CLI says who may call the API
        manifest = (tmp_path / "demo" / "toy-videos" / "captions.jsonl").read_text().splitlines()
        captioned = {json.loads(line)["caption"]: json.loads(line)["video"] for line in manifest}
        for example in examples:  # every printed example really works
            query = parse_qs(urlsplit(example).query)["q"][0]
            body = httpx.post(
                f"http://127.0.0.1:{port}/search", json={"collection": "demo", "query": query}
            ).json()
            assert len(body["results"]) == 6
            assert body["results"][0]["source_name"] == Path(captioned[query]).name
            assert body["adapter_version"] == load_adapter(adapter).version
        described = httpx.get(f"http://127.0.0.1:{port}/collections/demo").json()
        assert described["videos"] == 6 and described["adapter_version"] == load_adapter(adapter).version
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    # Ctrl+C ends the server cleanly; like other CLIs it then exits with 130 (128 + SIGINT).
    assert proc.returncode in (0, 130), log_path.read_text()


def test_the_demo_searches_with_mean_pooling_unless_the_environment_says_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from videoseek.cli.demo_cmd import demo_search
    from videoseek.settings import Settings

    monkeypatch.delenv("VIDEOSEEK_SEARCH__POOLING", raising=False)
    assert demo_search(Settings().search).pooling == "mean"  # the toy world's better ranking
    monkeypatch.setenv("VIDEOSEEK_SEARCH__POOLING", "text_conditioned")
    assert demo_search(Settings().search).pooling == "text_conditioned"


def test_demo_uses_a_toy_adapter_only_if_it_fits_the_toy_clip(tmp_path: Path) -> None:
    from videoseek.adapter import AdaptedClip, AdapterConfig
    from videoseek.cli.demo_cmd import _usable_adapter
    from videoseek.model_spec import ModelSpec
    from videoseek.settings import load_settings
    from videoseek.toy.model import register_toy_model_config

    settings = load_settings(data_dir=tmp_path / "d", model="toy", device="cpu")
    fits = tmp_path / "fits"
    AdaptedClip.from_spec(ModelSpec.parse("toy"), AdapterConfig(rank=2, shared_dim=4)).save(fits)
    assert _usable_adapter(settings, fits) == fits
    register_toy_model_config()
    other = tmp_path / "other-base"
    AdaptedClip.from_spec(ModelSpec.parse("videoseek-toy:random"), AdapterConfig(rank=2, shared_dim=4)).save(
        other
    )
    assert _usable_adapter(settings, other) is None
    assert _usable_adapter(settings, None) is None


def test_serve_refuses_a_model_it_cannot_load(tmp_path: Path) -> None:
    for spec, says in (
        ("NoSuchModel:openai", "unknown open_clip model"),
        ("ViT-B-32:/nonexistent/weights.pt", "/nonexistent/weights.pt"),
        ("ViT-B-32:nosuchtag", "unknown pretrained tag"),
    ):
        result = CliRunner().invoke(app, ["serve", "--data-dir", str(tmp_path), "--model", spec])
        assert result.exit_code == 2, result.output
        assert "VIDEOSEEK_MODEL" in result.output and says in result.output


def test_serve_lets_idle_openmp_threads_sleep_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    from videoseek.cli.serve_cmd import prefer_passive_openmp_wait

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    prefer_passive_openmp_wait()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    prefer_passive_openmp_wait()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


@pytest.mark.slow
def test_demo_seeds_its_collection_on_a_running_server_through_the_api_once(tmp_path: Path) -> None:
    """What `docker compose up` runs once (`demo-seed`): the toy collection on a server, through its API."""
    from videoseek.adapter import load_adapter
    from videoseek.toy.adapter import toy_adapter_dir

    adapter = toy_adapter_dir()
    assert adapter is not None
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDEOSEEK_")}
    env.update(VIDEOSEEK_MODEL="toy", VIDEOSEEK_DATA_DIR=str(tmp_path / "server"), OMP_NUM_THREADS="1")
    log_path = tmp_path / "serve.log"
    log = log_path.open("w+")
    serve = [sys.executable, "-m", "videoseek", "serve", "--port", str(port)]
    proc = subprocess.Popen(serve, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    seed = [sys.executable, "-m", "videoseek", "demo", "--api", url, "--data-dir", str(tmp_path / "seed")]
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            time.sleep(0.5)
        first = subprocess.run([*seed, "--videos", "4"], env=env, capture_output=True, text=True, timeout=600)
        again = subprocess.run([*seed, "--videos", "4"], env=env, capture_output=True, text=True, timeout=600)
        described = httpx.get(f"{url}/collections/demo").json()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    assert first.returncode == 0, first.stderr + log_path.read_text()[-3000:]
    assert "of 4 demo captions find their own video first" in first.stdout, first.stdout
    assert described["videos"] == 4 and described["adapter_version"] == load_adapter(adapter).version
    assert again.returncode == 0 and "already has 4 videos: nothing to seed" in again.stdout, again.stdout
