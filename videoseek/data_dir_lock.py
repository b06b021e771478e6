"""One writing process per data directory in embedded mode: an exclusive ``flock`` held for the process's life.

Embedded mode keeps state that only one process may change in the data directory: the Edge store's catalog
(which collection lives in which shard), the SQLite job store and the in-process ingest queue, which resumes
unfinished jobs at start. Two processes on one directory would each create a collection the other does not see,
and one side's acknowledged videos would be gone after a restart. So every embedded process that writes there
(``videoseek serve``, ``demo``, ``ingest``, ``reindex``) holds this lock from start to exit, and a second one
is refused at once with who holds it.

The kernel drops an ``flock`` when its holder dies, even by ``kill -9``, so no stale lock ever needs cleaning
up. The lock file records the holder (pid, command, command line, start time and, for a server, its address)
after the lock is taken, for the message the next process prints; the holder empties it when it lets go.

Distributed mode never takes it: the API and the workers share the data volume by design, and what needs a
single owner there lives in Redis and the Qdrant server.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

LOCK_FILE = "writer.lock"


@dataclass(frozen=True)
class Holder:
    """Who holds a data directory: what the lock file records."""

    pid: int
    command: str  # e.g. "videoseek serve"
    since: str  # ISO 8601, UTC
    argv: list[str] = field(default_factory=list)
    api_url: str | None = None  # where a server holding the directory answers

    @classmethod
    def from_json(cls, text: str) -> Holder | None:
        """The holder recorded in ``text``; None when it is empty or not (yet) a whole record."""
        try:
            data = json.loads(text)
            holder = cls(
                pid=int(data["pid"]),
                command=str(data["command"]),
                since=str(data["since"]),
                argv=[str(arg) for arg in data.get("argv", [])],
                api_url=str(data["api_url"]) if data.get("api_url") else None,
            )
        except (ValueError, TypeError, KeyError):
            return None
        return holder

    def describe(self) -> str:
        return f"pid {self.pid} ({self.command}, since {self.since})"


class DataDirInUse(RuntimeError):
    """Another process holds the data directory; ``holder`` says who, when its record could be read."""

    def __init__(self, data_dir: Path, holder: Holder | None) -> None:
        self.data_dir = data_dir
        self.holder = holder
        who = holder.describe() if holder is not None else "another process"
        super().__init__(f"data directory {data_dir} is in use by {who}; stop it first")


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def read_holder(data_dir: Path) -> Holder | None:
    """The recorded holder of ``data_dir``, if a live process is recorded (the lock itself is not checked)."""
    try:
        holder = Holder.from_json((data_dir / LOCK_FILE).read_text(encoding="utf-8"))
    except OSError:
        return None
    # The record of a holder that died before the next one wrote its own: the pid says it is stale.
    return holder if holder is not None and _alive(holder.pid) else None


class DataDirLock:
    """This process's hold on a data directory; :meth:`release` (or leaving the ``with`` block) lets go."""

    def __init__(self, data_dir: Path, fd: int, holder: Holder) -> None:
        self.data_dir = data_dir
        self.holder = holder
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, data_dir: Path, command: str, *, api_url: str | None = None) -> DataDirLock:
        """Take the directory's lock now (never waits); :class:`DataDirInUse` when another process has it.

        One holder per open file: a second ``acquire`` in the same process is refused like another process.
        """
        data_dir.mkdir(parents=True, exist_ok=True)
        path = data_dir / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by exec'd children (PEP 446)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DataDirInUse(data_dir, read_holder(data_dir)) from None
        except BaseException:
            os.close(fd)
            raise
        holder = Holder(os.getpid(), command, _now_iso(), list(sys.argv), api_url)
        try:
            _rewrite(fd, json.dumps(asdict(holder)) + "\n")
        except BaseException:
            os.close(fd)  # closing the only descriptor drops the lock
            raise
        return cls(data_dir, fd, holder)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Empty the record and drop the lock (again: nothing)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            with contextlib.suppress(OSError):  # the lock goes with the descriptor anyway
                os.ftruncate(fd, 0)
        finally:
            os.close(fd)

    def __enter__(self) -> DataDirLock:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "held" if self.held else "released"
        return f"DataDirLock({str(self.data_dir)!r}, {state}, {self.holder.describe()})"


def _rewrite(fd: int, text: str) -> None:
    os.ftruncate(fd, 0)
    data = text.encode("utf-8")
    written = 0
    while written < len(data):
        written += os.pwrite(fd, data[written:], written)
