"""The Redis connections of distributed mode, made in one place so that every one has timeouts.

A hung Redis must cost a caller seconds, not a blocked thread: every client gets a connect and a socket
timeout. ``text`` clients decode replies to ``str`` (job hashes, admin-task state); the others return bytes
(locks, queue lengths).
"""

from __future__ import annotations

from typing import Any

import redis

CONNECT_TIMEOUT_S = 5.0
SOCKET_TIMEOUT_S = 30.0


def redis_client(url: str, *, text: bool, timeout_s: float = SOCKET_TIMEOUT_S) -> Any:
    """A client of its own connection pool (``Any``: redis-py's stubs cannot express ``decode_responses``)."""
    return redis.Redis.from_url(
        url,
        decode_responses=text,
        socket_connect_timeout=min(CONNECT_TIMEOUT_S, timeout_s),
        socket_timeout=timeout_s,
    )
