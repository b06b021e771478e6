"""The threads the API's Redis-touching calls run on, apart from the ones searches use.

A hung Redis holds each call that needs it for up to ``worker.api_redis_timeout_s``. On the event loop's shared
default executor (``asyncio.to_thread``: a few threads per core) a handful of such calls would take every thread,
and searches, which never touch Redis, would queue behind them. Here they have threads of their own, and a call
that finds them all busy waits at most that long for one before it is refused with 503 + Retry-After.

Job status, task status and cancel, admin task starts and lists, uploads, video lookups and deletes,
collection deletes, training pairs, readiness and metrics go through the lane. In embedded mode the same calls touch SQLite
and in-process state; they use the lane all the same, so both modes run one code path.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from service.errors import Unavailable

LANE_THREADS = 32  # Redis calls in flight at once; each is a thread blocked on a socket, little else
RETRY_AFTER_S = 5  # as for the other Redis 503s (main.py's error mapping)

P = ParamSpec("P")
T = TypeVar("T")


class RedisLaneFull(Unavailable):
    """Every lane thread has been busy for the whole wait: Redis is answering slowly, or not at all."""

    code = "redis_unavailable"


class RedisLane:
    """Runs blocking calls on its own threads; :meth:`run` waits ``wait_s`` at most for a free one."""

    def __init__(self, wait_s: float, threads: int = LANE_THREADS) -> None:
        self._wait_s = wait_s
        self._threads = threads
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="redis-lane")
        self._free: asyncio.Semaphore | None = None  # made on the app's event loop, at first use

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` on a lane thread; :class:`RedisLaneFull` if none frees up in time."""
        if self._free is None:
            self._free = asyncio.Semaphore(self._threads)
        try:
            async with asyncio.timeout(self._wait_s):  # unlike wait_for, never loses a cancel from outside
                await self._free.acquire()
        except TimeoutError:
            raise RedisLaneFull(
                f"Redis (jobs and tasks) is answering slowly: {self._threads} calls have been waiting on "
                f"it for over {self._wait_s:g} s; retry shortly",
                retry_after_s=RETRY_AFTER_S,
            ) from None
        free, loop = self._free, asyncio.get_running_loop()

        def release(_: object) -> None:
            # When the thread is done, not when the request is: a request cancelled (its client gone) while
            # Redis hangs still holds its thread, so its place must stay taken too.
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (shutdown)
                loop.call_soon_threadsafe(free.release)

        try:
            future = self._pool.submit(functools.partial(fn, *args, **kwargs))
        except BaseException:
            free.release()
            raise
        future.add_done_callback(release)
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        """Stop taking calls; those still blocked on Redis end with their timeout."""
        self._pool.shutdown(wait=False, cancel_futures=True)
