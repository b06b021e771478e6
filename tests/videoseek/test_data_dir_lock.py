"""One writer per embedded data directory: refused at once with who holds it, free again when the holder dies."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from videoseek.data_dir_lock import LOCK_FILE, DataDirInUse, DataDirLock, read_holder


def test_a_second_writer_is_refused_at_once_with_the_holders_pid_command_and_start() -> None:
    data_dir = Path(os.environ["VIDEOSEEK_DATA_DIR"])
    # A second open of the file is a second holder, in this process as in any other.
    with (
        DataDirLock.acquire(data_dir, "videoseek serve", api_url="http://127.0.0.1:8123"),
        pytest.raises(DataDirInUse) as refused,
    ):
        DataDirLock.acquire(data_dir, "videoseek ingest")
    holder = refused.value.holder
    assert holder is not None
    assert (holder.pid, holder.command, holder.api_url) == (
        os.getpid(),
        "videoseek serve",
        "http://127.0.0.1:8123",
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", holder.since)
    assert holder.argv == sys.argv  # the holder's command line
    assert str(refused.value) == (
        f"data directory {data_dir} is in use by pid {os.getpid()} (videoseek serve, since {holder.since}); "
        "stop it first"
    )


def test_a_released_directory_is_taken_again_and_keeps_no_record_of_its_last_holder(tmp_path: Path) -> None:
    first = DataDirLock.acquire(tmp_path, "videoseek ingest")
    assert read_holder(tmp_path) == first.holder
    first.release()
    first.release()  # again: nothing
    assert (tmp_path / LOCK_FILE).read_text() == "" and read_holder(tmp_path) is None
    with DataDirLock.acquire(tmp_path, "videoseek reindex") as second:
        assert read_holder(tmp_path) == second.holder


def test_the_lock_of_a_killed_holder_is_free_with_nothing_to_clean_up(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from videoseek.data_dir_lock import DataDirLock;"
        "lock = DataDirLock.acquire(Path(sys.argv[1]), 'videoseek serve'); print('held', flush=True);"
        "sys.stdin.read()"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(DataDirInUse, match=f"in use by pid {holder.pid} \\(videoseek serve, since "):
            DataDirLock.acquire(tmp_path, "videoseek ingest")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
    assert read_holder(tmp_path) is None  # its record is still in the file, but names a dead process
    with DataDirLock.acquire(tmp_path, "videoseek ingest") as lock:
        assert lock.held and read_holder(tmp_path) == lock.holder
