"""Redis clients whose every call ends within a known time.

A Redis that stops answering without closing its connections (a network partition, a frozen or swapping
server) otherwise holds a caller for as long as the socket timeout allows, or forever without one. Workers
wait long (``worker.redis_timeout_s``) and retry what fails; the API waits briefly
(``worker.api_redis_timeout_s``, see :meth:`~videoseek.settings.Settings.for_api`) and answers 503.
"""

from __future__ import annotations

from typing import Any

CONNECT_TIMEOUT_S = 5.0  # the longest wait for a TCP connection, whatever the call's timeout


def connect_timeout_s(timeout_s: float) -> float:
    """How long to wait for a new connection, for calls that may take ``timeout_s``."""
    return min(timeout_s, CONNECT_TIMEOUT_S)


def redis_client(url: str, timeout_s: float, *, decode_responses: bool = False) -> Any:
    """A client (own connection pool) whose calls each fail within about ``timeout_s`` seconds.

    No retries: a retry after a timeout would double the wait, and a pooled connection the server closed (a
    Redis restart) is already replaced when it is taken from the pool.
    """
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        url,
        decode_responses=decode_responses,
        socket_timeout=timeout_s,
        socket_connect_timeout=connect_timeout_s(timeout_s),
        retry=Retry(NoBackoff(), 0),
    )
