"""sample_frames_sandboxed(): same frames as in-process; hangs, crashes and memory blow-ups cost one file."""

from __future__ import annotations

import ctypes
import os
import time
from pathlib import Path

import numpy as np
import pytest

from videoseek.settings import IngestSettings
from videoseek.video import (
    DecodeFailed,
    DecoderCrashed,
    DecodeTimeout,
    NotMedia,
    run_in_sandbox,
    sample_frames,
    sample_frames_sandboxed,
)


def test_sandboxed_result_equals_in_process_result(make_video) -> None:
    path = make_video("rot270_audio.mp4", rotation=270, audio=True)
    limits = IngestSettings(decode_timeout_s=60)
    inside = sample_frames_sandboxed(path, limits, fps=2.0, max_side=32)
    here = sample_frames(path, limits, fps=2.0, max_side=32)
    np.testing.assert_array_equal(inside.frames, here.frames)
    np.testing.assert_array_equal(inside.timestamps, here.timestamps)
    assert inside.info == here.info
    assert (inside.duration_s, inside.decoded_frames, inside.problems) == (
        here.duration_s,
        here.decoded_frames,
        here.problems,
    )


def test_rejections_cross_the_process_boundary_with_their_code(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mkv"
    empty.write_bytes(b"")
    with pytest.raises(NotMedia) as caught:
        sample_frames_sandboxed(empty, IngestSettings(decode_timeout_s=60))
    assert caught.value.reason == "the file is empty (0 bytes)"


def test_hang_is_killed_at_the_timeout_without_stalling_the_caller() -> None:
    started = time.monotonic()
    with pytest.raises(DecodeTimeout) as caught:
        run_in_sandbox(time.sleep, (60,), timeout_s=1.0)
    assert caught.value.code == "timeout"
    assert time.monotonic() - started < 15  # 1 s timeout + process start-up on a loaded 2-core box


@pytest.mark.parametrize(
    ("target", "args", "signal_name"),
    [(ctypes.string_at, (0,), "SIGSEGV"), (os.abort, (), "SIGABRT")],
    ids=["segfault", "abort"],
)
def test_crash_in_native_code_becomes_decoder_crashed(target, args, signal_name: str) -> None:
    with pytest.raises(DecoderCrashed) as caught:
        run_in_sandbox(target, args, timeout_s=30)
    assert caught.value.code == "decoder_crashed"
    assert signal_name in caught.value.reason


def test_memory_cap_turns_a_huge_allocation_into_decode_failed() -> None:
    with pytest.raises(DecodeFailed, match="memory"):
        run_in_sandbox(bytearray, (6 * 1024**3,), timeout_s=30, memory_bytes=2 * 1024**3)


def test_caller_keeps_working_after_a_crash(make_video) -> None:
    with pytest.raises(DecoderCrashed):
        run_in_sandbox(ctypes.string_at, (0,), timeout_s=30)
    sampled = sample_frames_sandboxed(make_video("after_crash.mp4"), IngestSettings(decode_timeout_s=60))
    assert len(sampled) == 3
