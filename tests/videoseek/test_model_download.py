"""Model weights are downloaded once through huggingface_hub, verified, and found again; offline says what to do.

The real download code runs (``videoseek models pull``, ``videoseek serve`` with ``VIDEOSEEK_MODEL_DOWNLOAD``)
against a local fake hub (``tests/helpers/fake_hf_hub.py``, reached through ``HF_ENDPOINT``) serving random
weights of a tiny architecture, never the internet. Each command runs as a user runs it, in its own process, with
its own ``HF_HOME`` and ``HOME`` (the caches) under the test's directory. A process that imports torch and
open_clip takes seconds to start on a small machine, so the default suite keeps the download, the cache hit and
the two refusals; ``-m slow`` adds the rest (serve end to end, the checksum, the fallback file, a silent hub).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fake_hf_hub import HUB_REPO, HUB_SPEC, serve_fake_hub, silent_server, tiny_weights

from videoseek.model_errors import WeightsNotFound
from videoseek.pretrained_weights import verify_cached_file

REPO_ROOT = Path(__file__).resolve().parents[2]
HELPERS = REPO_ROOT / "tests" / "helpers"
COMMAND_TIMEOUT_S = 120  # a guard against a hang, not a measurement
READY_TIMEOUT_S = 180.0


def _env(tmp_path: Path, endpoint: str, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIDEOSEEK_", "HF_"))}
    env.update(
        HF_ENDPOINT=endpoint,
        HF_HOME=str(tmp_path / "hf-home"),
        HOME=str(tmp_path / "home"),  # open_clip's ~/.cache/clip
        VIDEOSEEK_DATA_DIR=str(tmp_path / "data"),
        VIDEOSEEK_DEVICE="cpu",
        PYTHONPATH=os.pathsep.join([str(REPO_ROOT), str(HELPERS), env.get("PYTHONPATH", "")]),
        OMP_NUM_THREADS="1",
    )
    return {**env, **more}


def _videoseek(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(HELPERS / "tiny_hub_cli.py"), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)


def _repo_cache(tmp_path: Path) -> Path:
    return tmp_path / "hf-home" / "hub" / ("models--" + HUB_REPO.replace("/", "--"))


def test_models_pull_downloads_into_the_hub_cache_verifies_and_says_where(tmp_path: Path) -> None:
    weights = tiny_weights()
    with serve_fake_hub({HUB_REPO: {"open_clip_model.safetensors": weights}}) as hub:
        env = _env(tmp_path, hub.endpoint)
        first = _videoseek(env, "models", "pull", HUB_SPEC, "--json")
        assert first.returncode == 0, first.stderr
        report = json.loads(first.stdout)
        assert hub.blob_requests() == [("GET", f"/blobs/{hashlib.sha256(weights).hexdigest()}")]
        hub.requests.clear()
        again = _videoseek(env, "models", "pull", HUB_SPEC, "--json")
        assert again.returncode == 0, again.stderr
        assert hub.requests == []  # found in the cache: the hub is not asked again
    assert report["downloaded"] is True and json.loads(again.stdout)["downloaded"] is False
    path = Path(report["file"])
    assert path.is_relative_to(_repo_cache(tmp_path)) and path.name == "open_clip_model.safetensors"
    assert path.read_bytes() == weights and report["sha256"] == hashlib.sha256(weights).hexdigest()
    assert str(_repo_cache(tmp_path)) in report["cache"] and report["use"] == f"VIDEOSEEK_MODEL={HUB_SPEC}"
    assert "100%" in first.stderr  # the progress bar, although stderr is no terminal here
    assert "downloading the weights of" in first.stderr and HUB_REPO in first.stderr


@pytest.mark.slow
def test_models_list_shows_what_is_on_disk(tmp_path: Path) -> None:
    with serve_fake_hub({HUB_REPO: {"open_clip_model.safetensors": tiny_weights()}}) as hub:
        env = _env(tmp_path, hub.endpoint)
        before = _videoseek(env, "models", "list", "--json")
        assert _videoseek(env, "models", "pull", HUB_SPEC).returncode == 0
        after = _videoseek(env, "models", "list", "--downloaded", "--json")
    rows = {row["model"]: row for row in map(json.loads, before.stdout.splitlines())}
    assert rows[HUB_SPEC]["on_disk"] is None and rows[HUB_SPEC]["source"] == HUB_REPO
    assert "ViT-B-32:openai" in rows and "toy" in rows
    on_disk = {row["model"]: row for row in map(json.loads, after.stdout.splitlines())}
    assert set(on_disk) == {"toy", HUB_SPEC} and Path(on_disk[HUB_SPEC]["on_disk"]).is_file()


@pytest.mark.slow
def test_a_repository_with_only_the_bin_file_is_downloaded_from_it(tmp_path: Path) -> None:
    weights = tiny_weights("bin")
    with serve_fake_hub({HUB_REPO: {"open_clip_pytorch_model.bin": weights}}) as hub:
        result = _videoseek(_env(tmp_path, hub.endpoint), "models", "pull", HUB_SPEC, "--json")
    assert result.returncode == 0, result.stderr
    path = Path(json.loads(result.stdout)["file"])
    assert path.name == "open_clip_pytorch_model.bin" and path.read_bytes() == weights


@pytest.mark.slow
def test_a_download_that_does_not_match_the_hubs_checksum_is_removed_and_refused(tmp_path: Path) -> None:
    with serve_fake_hub({HUB_REPO: {"open_clip_model.safetensors": tiny_weights()}}, corrupt=True) as hub:
        result = _videoseek(_env(tmp_path, hub.endpoint), "models", "pull", HUB_SPEC)
    assert result.returncode == 2
    assert "checksum" in result.stderr and "removed" in result.stderr
    blobs = _repo_cache(tmp_path) / "blobs"
    assert not any(p.is_file() and not p.name.endswith(".incomplete") for p in blobs.glob("*"))


@pytest.mark.slow
def test_serve_downloads_a_missing_model_once_as_it_starts_and_serves_it(tmp_path: Path) -> None:
    """The issue's 'Done when': `VIDEOSEEK_MODEL=NAME:TAG videoseek serve` just works on a machine online."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with serve_fake_hub({HUB_REPO: {"open_clip_model.safetensors": tiny_weights()}}) as hub:
        env = _env(tmp_path, hub.endpoint, VIDEOSEEK_MODEL=HUB_SPEC)
        log_path = tmp_path / "serve.log"
        with log_path.open("w") as log:
            command = [sys.executable, str(HELPERS / "tiny_hub_cli.py"), "serve", "--port", str(port)]
            proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                ready = _wait_ready(proc, f"http://127.0.0.1:{port}/readyz")
                body = httpx.get(f"http://127.0.0.1:{port}/readyz").json() if ready else None
            finally:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        assert len(hub.blob_requests()) == 1
    output = log_path.read_text()
    assert ready, output
    assert body is not None and body["status"] in ("ok", "degraded"), body
    assert "downloading the weights of" in output and "100%" in output
    assert any(p.name == "open_clip_model.safetensors" for p in _repo_cache(tmp_path).rglob("*"))


def _wait_ready(proc: subprocess.Popen[bytes], url: str) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return False


def _assert_says_what_to_do(message: str) -> None:
    assert f"videoseek models pull {HUB_SPEC}" in message
    assert "copy the weights file" in message and f"{HUB_REPO}/open_clip_pytorch_model.bin" in message
    assert "VIDEOSEEK_MODEL=toy" in message


def test_never_refuses_at_once_naming_the_ways_to_the_weights_and_asks_no_hub(tmp_path: Path) -> None:
    with serve_fake_hub({HUB_REPO: {"open_clip_model.safetensors": tiny_weights()}}) as hub:
        env = _env(tmp_path, hub.endpoint, VIDEOSEEK_MODEL=HUB_SPEC, VIDEOSEEK_MODEL_DOWNLOAD="never")
        result = _videoseek(env, "serve")
        assert hub.requests == []
    assert result.returncode == 2
    assert "VIDEOSEEK_MODEL_DOWNLOAD=never" in result.stderr
    assert str(_repo_cache(tmp_path)) in result.stderr  # where to put a copy
    _assert_says_what_to_do(result.stderr)


def test_a_refused_connection_fails_naming_the_hub_and_the_ways(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    result = _videoseek(_env(tmp_path, closed), "models", "pull", HUB_SPEC)
    assert result.returncode == 2
    assert f"could not download the weights of {HUB_SPEC} from {closed}: cannot reach it" in result.stderr
    _assert_says_what_to_do(result.stderr)


@pytest.mark.slow
def test_a_hub_that_never_answers_fails_after_one_try_of_the_etag_timeout(tmp_path: Path) -> None:
    with silent_server() as (url, received):
        result = _videoseek(_env(tmp_path, url, HF_HUB_ETAG_TIMEOUT="1"), "models", "pull", HUB_SPEC)
        tries = [line for line in received if "/resolve/" in line]
    assert result.returncode == 2
    assert "no answer within 1 s" in result.stderr
    # One try, no retries: huggingface_hub's own download would ask again with a minute's timeout per file.
    assert tries == [f"HEAD /{HUB_REPO}/resolve/main/open_clip_model.safetensors HTTP/1.1"]
    _assert_says_what_to_do(result.stderr)


@pytest.mark.slow
def test_huggingface_offline_mode_is_obeyed_with_the_reason(tmp_path: Path) -> None:
    with serve_fake_hub({HUB_REPO: {"open_clip_model.safetensors": tiny_weights()}}) as hub:
        result = _videoseek(_env(tmp_path, hub.endpoint, HF_HUB_OFFLINE="1"), "models", "pull", HUB_SPEC)
        assert hub.requests == []
    assert result.returncode == 2 and "HF_HUB_OFFLINE is set" in result.stderr


def test_a_cached_file_is_checked_against_the_blob_name_the_hub_gave_it(tmp_path: Path) -> None:
    content = b"weights"
    blob = tmp_path / "blobs" / hashlib.sha256(content).hexdigest()
    blob.parent.mkdir()
    blob.write_bytes(content)
    entry = tmp_path / "snapshot" / "open_clip_model.safetensors"
    entry.parent.mkdir()
    entry.symlink_to(blob)
    assert verify_cached_file(entry) == hashlib.sha256(content).hexdigest()
    blob.write_bytes(b"weighty")  # altered on disk after the download
    with pytest.raises(WeightsNotFound, match="sha256"):
        verify_cached_file(entry)
    git_sha1 = hashlib.sha1(b"blob 7\0weighty").hexdigest()
    assert verify_cached_file(entry, expected=f'"{git_sha1}"')
    with pytest.raises(WeightsNotFound, match="SHA-1"):
        verify_cached_file(entry, expected="0" * 40)
