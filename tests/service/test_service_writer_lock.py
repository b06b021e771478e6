"""Real processes on one embedded data directory: one writer at a time, and ``ingest --api`` as the way around.

Each test runs ``videoseek serve`` (toy CLIP) as a child process and waits for ``/readyz``; the commands that
must be refused run as processes of their own, so their exit status and stderr are what a user sees.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

READY_TIMEOUT_S = 180.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(data_dir: Path, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDEOSEEK_")}
    env.update(VIDEOSEEK_DATA_DIR=str(data_dir), VIDEOSEEK_MODEL="toy", VIDEOSEEK_DEVICE="cpu")
    env["OMP_NUM_THREADS"] = "1"
    return {**env, **more}


def _videoseek(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "videoseek", *args]
    return subprocess.run(command, env=_env(data_dir, **env), capture_output=True, text=True, timeout=240)


def _refused(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A command that must end at once, refused: one still running after a minute was not refused."""
    command = [sys.executable, "-m", "videoseek", *args]
    try:
        return subprocess.run(command, env=_env(data_dir), capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"`videoseek {' '.join(args)}` was not refused: it ran on beside the server"
        ) from exc


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path


@contextlib.contextmanager
def running_server(data_dir: Path, log: Path, **env: str) -> Iterator[Server]:
    """``videoseek serve`` on a free port, once ``/readyz`` says ready; killed (its whole group) at the end."""
    port = _free_port()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "videoseek", "serve", "--port", str(port), "--log-level", "warning"],
            env=_env(data_dir, **env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(proc, f"http://127.0.0.1:{port}", log)
    try:
        _wait_ready(server)
        yield server
    finally:
        _kill(proc)


def _wait_ready(server: Server) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline and server.proc.poll() is None:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(server.url + "/readyz", timeout=5).status_code == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"server not ready (exit {server.proc.poll()}):\n{server.log.read_text()[-3000:]}")


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """kill -9 of the server and whatever it started (decoder fork server), then wait until all are gone."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(60)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def _toy_video(directory: Path) -> Path:
    from videoseek.toy.generate import generate_videos

    generate_videos(directory, 1, seed=3, domain="A", durations_s=[8])
    return directory / "videos" / "00000.mp4"


def test_a_second_writer_is_refused_naming_the_server_and_its_api_and_starts_once_it_was_killed(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    with running_server(data_dir, tmp_path / "serve.log") as first:
        again = _refused(data_dir, "serve", "--port", str(_free_port()))
        assert again.returncode == 2, again.stderr
        holder = f"data directory {data_dir} is in use by pid {first.proc.pid} (videoseek serve, since "
        assert again.stderr.startswith("error: " + holder), again.stderr
        assert f"videoseek ingest --api {first.url}" in again.stderr
        assert again.stderr.count("\n") == 1 and "Traceback" not in again.stderr  # one line

        local = _refused(data_dir, "ingest", "--collection", "films", str(tmp_path / "nothing.mp4"))
        assert local.returncode == 2, local.stderr
        assert local.stderr.startswith("error: " + holder), local.stderr
        assert (
            f"send the files through the running server: videoseek ingest --api {first.url} " in local.stderr
        )
        assert local.stderr.count("\n") == 1 and "Traceback" not in local.stderr
        # refused before it wrote anything: the server still has no collection
        assert httpx.get(first.url + "/collections").json()["collections"] == []
    # killed with -9 above: the kernel dropped its lock, and the next writer starts without any cleanup
    with running_server(data_dir, tmp_path / "serve-again.log") as second:
        assert httpx.get(second.url + "/readyz").status_code == 200


ADMIN_KEY = "writer-lock-test-admin-key"


def test_ingest_through_the_api_indexes_what_the_running_server_accepts_and_summarizes_it_like_local_mode(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    video = _toy_video(tmp_path / "toy")
    copy = tmp_path / "same-bytes.mp4"
    shutil.copyfile(video, copy)
    text = tmp_path / "notes.mp4"
    text.write_text("just some words\n")
    missing = tmp_path / "missing.mp4"
    keys = json.dumps([{"key": ADMIN_KEY, "scopes": ["admin"]}])
    auth = {"authorization": f"Bearer {ADMIN_KEY}"}
    with running_server(data_dir, tmp_path / "serve.log", VIDEOSEEK_API_KEYS=keys) as server:
        refused = _videoseek(data_dir, "ingest", "--api", server.url, "-c", "films", str(video))
        assert refused.returncode == 2 and f"the server at {server.url} answered 401" in refused.stderr

        files = [str(p) for p in (video, copy, text, missing)]
        captions = tmp_path / "captions.jsonl"  # sent as the upload's captions field
        captions.write_text(json.dumps({"video": str(video.relative_to(tmp_path)), "caption": "a toy scene"}))
        sent = _videoseek(
            data_dir,
            *("ingest", "--api", server.url, "--collection", "films", "--metadata", '{"source": "cli"}'),
            *("--captions", str(captions), "--json", *files),
            VIDEOSEEK_API_KEY=ADMIN_KEY,  # the key comes from the environment, not the command line
        )
        assert sent.returncode == 1, sent.stderr  # two of the files failed
        summary = json.loads(sent.stdout)
        (indexed,) = summary["indexed"]
        (skipped,) = summary["skipped"]
        assert indexed["file"] == str(video) and indexed["clips"] >= 1 and indexed["problems"] == []
        assert skipped["file"] == str(copy) and skipped["duplicate_of"] == indexed["job_id"]
        reasons = {item["file"]: item["reason"] for item in summary["failed"]}
        assert reasons.keys() == {str(text), str(missing)}
        assert "text file" in reasons[str(text)] and reasons[str(missing)] == "no such file or directory"

        described = httpx.get(f"{server.url}/collections/films", headers=auth).json()  # created by the CLI
        assert (described["videos"], described["clips"]) == (1, indexed["clips"])
        stored = httpx.get(
            f"{server.url}/collections/films/videos/{indexed['video_id']}", headers=auth
        ).json()
        assert stored["source_name"] == video.name and stored["metadata"] == {"source": "cli"}
        (caption,) = httpx.get(f"{server.url}/collections/films/captions", headers=auth).json()["pairs"]
        assert (caption["video_id"], caption["text"]) == (indexed["video_id"], "a toy scene")

        plain = _videoseek(
            data_dir, "ingest", "--api", server.url, "-c", "films", str(video), "--api-key", ADMIN_KEY
        )
        assert plain.returncode == 0, plain.stderr
        assert plain.stdout.splitlines()[-1] == "0 indexed, 1 skipped, 0 failed"  # the local mode's summary

    unreachable = _videoseek(data_dir, "ingest", "--api", server.url, "-c", "films", str(video))
    assert unreachable.returncode == 2, unreachable.stderr
    assert f"cannot reach the server at {server.url}" in unreachable.stderr


@pytest.mark.parametrize(
    ("command", "instead"),
    [
        (
            ["serve"],
            "or use the server it runs at {url} (videoseek ingest --api {url} ... sends files to it)",
        ),
        (["demo", "--no-browser"], "or use the server it runs at {url}"),
        (["ingest", "-c", "films", "a.mp4"], "videoseek ingest --api {url} --collection films FILE..."),
        (
            ["reindex", "-c", "films", "--no-adapter"],
            "or ask the running server: POST {url}/collections/films/reindex",
        ),
    ],
)
def test_every_embedded_writing_command_is_refused_while_a_server_holds_the_directory(
    tmp_path: Path, command: list[str], instead: str
) -> None:
    from typer.testing import CliRunner

    from videoseek.cli.app import app
    from videoseek.data_dir_lock import DataDirLock

    data_dir = tmp_path / "data"
    url = "http://127.0.0.1:8765"
    env = {"VIDEOSEEK_DATA_DIR": str(data_dir), "VIDEOSEEK_MODEL": "toy", "VIDEOSEEK_DEVICE": "cpu"}
    args = [*command, "--data-dir", str(data_dir)] if command[0] == "demo" else command
    with DataDirLock.acquire(data_dir, "videoseek serve", api_url=url) as held:
        result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 2, result.output
    (line,) = result.output.splitlines()
    assert line.startswith(
        f"error: data directory {data_dir} is in use by {held.holder.describe()}; stop it first"
    )
    assert instead.format(url=url) in line
    assert not (data_dir / "qdrant").exists()  # refused before it opened anything
