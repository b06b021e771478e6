"""Run decoding in a separate process under a hard wall-clock limit, so one hostile file costs one job.

FFmpeg is C: a crafted file can make it loop forever or crash the process. The decode therefore runs in a
child process started with the ``forkserver`` context (``spawn`` where that is unavailable); a plain ``fork``
of a worker that may hold torch or CUDA threads is never used. The child gets a memory cap (RLIMIT_AS) and no
core dumps. A hang becomes ``DecodeTimeout``, a crash ``DecoderCrashed``; the caller carries on. Frames come
back through a temporary ``.npy`` file rather than being pickled through the pipe.
"""

from __future__ import annotations

import multiprocessing
import signal
import tempfile
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from videoseek.settings import IngestSettings
from videoseek.video.decode import SampledVideo, sample_frames
from videoseek.video.errors import (
    DecodeFailed,
    DecoderCrashed,
    DecodeTimeout,
    MediaRejected,
    rejection,
)
from videoseek.video.subtitles import read_subtitles

T = TypeVar("T")

# Modules the fork server imports once, so each decode child starts without re-importing PyAV and numpy.
_PRELOAD = ["videoseek.video.sandbox"]
_EXIT_GRACE_S = 5.0


def _context() -> multiprocessing.context.BaseContext:
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(_PRELOAD)  # no effect once the server runs; harmless then
        return ctx
    return multiprocessing.get_context("spawn")


def _limit_resources(memory_bytes: int) -> None:
    try:
        import resource
    except ImportError:  # not POSIX: no limits, the timeout still applies
        return
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if memory_bytes > 0:
        _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        cap = memory_bytes if hard == resource.RLIM_INFINITY else min(memory_bytes, hard)
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))


def _child_main(
    conn: Connection, target: Callable[..., Any], args: tuple[Any, ...], memory_bytes: int
) -> None:
    try:
        _limit_resources(memory_bytes)
        result = target(*args)
        message: tuple[str, Any] = ("ok", result)
    except MediaRejected as exc:
        message = ("rejected", (exc.code, exc.reason))
    except MemoryError:
        message = ("rejected", ("decode_failed", "decoding ran out of memory (the memory cap was reached)"))
    except BaseException as exc:  # anything the file provoked becomes this file's rejection, not a dead pool
        message = ("rejected", ("decode_failed", f"decoding failed: {type(exc).__name__}: {exc}"[:500]))
    try:
        conn.send(message)
    finally:
        conn.close()


def run_in_sandbox(
    target: Callable[..., T], args: tuple[Any, ...], timeout_s: float, memory_bytes: int = 0
) -> T:
    """Call ``target(*args)`` in a child process and return its (picklable) result.

    ``MediaRejected`` raised in the child is re-raised here; a child still running after ``timeout_s`` is
    killed (``DecodeTimeout``); a child that dies without answering raises ``DecoderCrashed``. ``target``
    must be importable by name (a module-level function or a builtin).
    """
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
    ctx = _context()
    receiver, sender = ctx.Pipe(duplex=False)
    process = ctx.Process(  # type: ignore[attr-defined]
        target=_child_main, args=(sender, target, args, memory_bytes), name="videoseek-decode", daemon=True
    )
    process.start()
    sender.close()  # only the child writes: EOF on our end then means the child is gone
    answered = False
    try:
        if not receiver.poll(timeout_s):
            raise DecodeTimeout(
                f"decoding took longer than {timeout_s:g} s and was stopped (the file may be corrupt or too "
                "complex; raise VIDEOSEEK_INGEST__DECODE_TIMEOUT_S for very long videos)"
            )
        try:
            status, payload = receiver.recv()
            answered = True
        except (EOFError, OSError):
            process.join(_EXIT_GRACE_S)
            raise DecoderCrashed(
                f"the decoder crashed on this file ({_describe_exit(process.exitcode)}); the file is "
                "probably corrupt or crafted"
            ) from None
    finally:
        receiver.close()
        process.join(_EXIT_GRACE_S if answered else 0)
        if process.is_alive():
            process.kill()
            process.join()
    if status == "ok":
        return payload  # type: ignore[no-any-return]
    code, reason = payload
    raise rejection(code, reason)


def _describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "no exit status"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit status {exitcode}"


def _sample_to_file(
    path: Path, limits: IngestSettings, fps: float | None, max_side: int, frames_file: Path
) -> dict[str, Any]:
    """Child side: sample, write the frames to ``frames_file``, read the subtitle tracks, return everything
    else (small)."""
    sampled = sample_frames(path, limits, fps=fps, max_side=max_side)
    np.save(frames_file, sampled.frames, allow_pickle=False)
    try:
        subtitles, notes = read_subtitles(path, limits)
    except Exception as exc:  # the frames decoded: unreadable subtitles cost only themselves
        subtitles, notes = [], [f"subtitles could not be read: {type(exc).__name__}: {exc}"[:300]]
    return {
        "timestamps": sampled.timestamps,
        "info": sampled.info,
        "duration_s": sampled.duration_s,
        "decoded_frames": sampled.decoded_frames,
        "problems": [*sampled.problems, *notes],
        "subtitles": subtitles,
    }


def sample_frames_sandboxed(
    path: Path, limits: IngestSettings, fps: float | None = None, max_side: int = 256
) -> SampledVideo:
    """:func:`sample_frames` in a child process limited to ``limits.decode_timeout_s`` seconds and
    ``limits.decode_memory_bytes`` of address space. Same result, with the text subtitle tracks' cues; hangs and
    crashes become rejections."""
    with tempfile.TemporaryDirectory(prefix="videoseek-decode-") as scratch:
        frames_file = Path(scratch) / "frames.npy"
        meta = run_in_sandbox(
            _sample_to_file,
            (Path(path), limits, fps, max_side, frames_file),
            timeout_s=limits.decode_timeout_s,
            memory_bytes=limits.decode_memory_bytes,
        )
        try:
            frames = np.load(frames_file, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DecodeFailed(f"the decoder process returned no readable frames ({exc})") from exc
    return SampledVideo(
        timestamps=np.asarray(meta["timestamps"], dtype=np.float64),
        frames=frames,
        info=meta["info"],
        duration_s=float(meta["duration_s"]),
        decoded_frames=int(meta["decoded_frames"]),
        problems=list(meta["problems"]),
        subtitles=list(meta["subtitles"]),
    )
