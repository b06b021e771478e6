"""README.md's shell blocks work as written on a fresh clone.

Every fenced ``bash`` block is either run or marked on the line before it with
``<!-- readme-test: skip (why) -->`` (the ones that build the venv, download from the internet or need Docker).
The fast tests check that every block is valid bash and that every ``videoseek`` command, option and ``make``
target it names exists. The last one (about 30 s) runs the unmarked blocks in README order, in one bash session, in a
throwaway directory laid out as a clone after ``make venv`` (``.venv`` is the environment running the tests):
one change only, the server's port (``VIDEOSEEK_PORT`` and every ``8000`` in the text) to a free one.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
from typer.testing import CliRunner

from videoseek.cli.app import app

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"
_BLOCK = re.compile(
    r"(?:<!-- readme-test: skip \((?P<why>.*?)\) -->\n)?^```bash\n(?P<body>.*?)^```$", re.S | re.M
)
_VIDEOSEEK = re.compile(
    r"(?:^|[\s;&|(=])(?:\.venv/bin/)?videoseek((?:\s+[a-z][a-z-]*){0,2})(?P<args>[^;&|\n]*)"
)
_GROUPS = {"models", "toy"}  # commands with subcommands
RUN_TIMEOUT_S = 900  # a guard against a hang (a server that never gets ready), not a measurement


@dataclass(frozen=True)
class Block:
    line: int
    body: str
    skip_reason: str | None


@cache
def readme_blocks() -> tuple[Block, ...]:
    text = README.read_text(encoding="utf-8")
    return tuple(
        Block(text.count("\n", 0, m.start("body")) + 1, m.group("body"), m.group("why"))
        for m in _BLOCK.finditer(text)
    )


def test_the_readme_has_blocks_to_run_and_every_skipped_one_says_why() -> None:
    blocks = readme_blocks()
    assert len([b for b in blocks if b.skip_reason is None]) >= 4, blocks
    assert all(b.skip_reason is None or len(b.skip_reason) > 10 for b in blocks)
    # `make demo` / `make test` build the venv and run the suite: they cannot run inside it.
    assert any("make demo" in b.body and b.skip_reason for b in blocks)


@pytest.mark.parametrize("block", readme_blocks(), ids=lambda b: f"line{b.line}")
def test_every_readme_block_is_valid_bash(block: Block) -> None:
    result = subprocess.run(["bash", "-n"], input=block.body, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"README line {block.line}: {result.stderr}"


def _invocations() -> list[tuple[int, list[str], list[str]]]:
    """(README line, command path, --options) of every `videoseek ...` in a block (run or skipped)."""
    found = []
    for block in readme_blocks():
        body = re.sub(r"<<(\w+)\n.*?^\1$", "", block.body, flags=re.S | re.M)  # heredoc bodies are data
        for offset, line in enumerate(body.splitlines()):
            code = line.split("  #", 1)[0]
            for match in _VIDEOSEEK.finditer(code):
                words = match.group(1).split()
                path = words[:2] if words and words[0] in _GROUPS else words[:1]
                options = re.findall(
                    r"(?<!\S)(--[a-z][a-z-]*)", match.group("args") + " " + " ".join(words[len(path) :])
                )
                found.append((block.line + offset, path, options))
    return found


def test_the_readme_names_videoseek_commands_and_options_that_exist() -> None:
    invocations = _invocations()
    assert {tuple(p) for _, p, _ in invocations} >= {("serve",), ("models", "pull"), ("ingest",)}
    for line, path, options in invocations:
        result = CliRunner().invoke(app, [*path, "--help"], terminal_width=200)
        assert result.exit_code == 0, f"README line {line}: `videoseek {' '.join(path)}`: {result.output}"
        for option in options:
            assert option in result.output, (
                f"README line {line}: `videoseek {' '.join(path)}` has no {option}"
            )


def test_the_make_targets_the_readme_names_exist() -> None:
    targets = set(re.findall(r"^([a-z][a-z-]*):", (REPO_ROOT / "Makefile").read_text(), flags=re.M))
    named = {t for b in readme_blocks() for t in re.findall(r"(?m)^make ([a-z][a-z-]*)", b.body)}
    assert named and named <= targets, named - targets


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _script(blocks: list[Block], port: int) -> str:
    parts = ["set -eo pipefail"]
    for block in blocks:
        parts.append(f"echo {shlex.quote(f'=== README block at line {block.line}')}")
        parts.append(block.body.replace("8000", str(port)))
    return "\n".join(parts) + "\n"


def test_the_readme_blocks_run_as_written_in_a_fresh_clone(tmp_path: Path) -> None:
    if not (Path(sys.prefix) / "bin" / "activate").is_file():
        pytest.skip(f"the tests do not run in a venv ({sys.prefix}): there is no .venv to activate")
    clone = tmp_path / "clone"
    clone.mkdir()
    (clone / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)  # what `make venv` leaves
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDEOSEEK_")}
    env.update(VIDEOSEEK_PORT=str(port), VIDEOSEEK_MODEL_DOWNLOAD="never", OMP_NUM_THREADS="1")
    to_run = [b for b in readme_blocks() if b.skip_reason is None]
    proc = subprocess.Popen(
        ["bash", "-c", _script(to_run, port)],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: whatever a block left running is ended below
    )
    try:
        output, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        with contextlib.suppress(ProcessLookupError):  # the group is gone already
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == 0, output[-6000:]
    assert all(f"=== README block at line {b.line}" in output for b in to_run), output[-6000:]
    assert '"stage":"done"' in output, output[-6000:]  # the uploaded video was indexed
    assert output.count('"results":[{') >= 2, output[-6000:]  # both searches found clips
    assert (clone / "videoseek-data").is_dir()  # the README's data directory, in the throwaway clone
