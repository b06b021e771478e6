"""Peak memory of a piece of work, on CUDA (allocator statistics) or on CPU (the process's peak RSS).

Both report the peak *above* what was in use when the measurement started (the frozen model, cached data), so
CPU and CUDA numbers mean the same thing: what training itself added (activations, gradients, optimizer state).

On CPU the peak comes from the kernel's high-water mark (``VmHWM``), reset through ``/proc/self/clear_refs``;
memory the C allocator kept from earlier work is first handed back with ``malloc_trim`` so it is not
mistaken for headroom. Where that is impossible (not Linux) the CPU peak is reported as None, not guessed.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import re
from pathlib import Path
from types import TracebackType

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kb(field: str) -> int | None:
    try:
        match = re.search(rf"^{field}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def _release_free_memory() -> None:
    gc.collect()
    libc = _libc()
    if libc is not None:
        with contextlib.suppress(AttributeError):  # not glibc: nothing to trim
            libc.malloc_trim(0)


_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter


def count_tensors_not_allocator_slack(threshold: int = 64 * 1024) -> bool:
    """Make this process's peak RSS track live tensors (for comparing methods' memory on CPU).

    glibc raises its mmap threshold (up to 32 MB) whenever a large block is freed, after which freed tensors
    stay in its heap and count in RSS. A fixed threshold returns every block above it to the OS on free (the
    same as ``MALLOC_MMAP_THRESHOLD_`` in the environment). Costs some page faults; returns False if not glibc.
    """
    libc = _libc()
    if libc is None:
        return False
    try:
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, threshold))
    except AttributeError:
        return False


class PeakMemory:
    """``with PeakMemory(device) as peak: ...`` then ``peak.bytes`` (None when it cannot be measured)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.bytes: int | None = None
        self._start = 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            return self
        _release_free_memory()
        try:
            _CLEAR_REFS.write_text("5")  # resets VmHWM to the current RSS
        except OSError:
            self._start = -1
            return self
        self._start = (_status_kb("VmRSS") or 0) * 1024
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.bytes = torch.cuda.max_memory_allocated(self.device) - self._start
            return
        peak = _status_kb("VmHWM")
        self.bytes = None if self._start < 0 or peak is None else max(0, peak * 1024 - self._start)


def tensor_bytes(module: torch.nn.Module) -> int:
    """Bytes held by a module's parameters and buffers (what the model itself occupies)."""
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)
