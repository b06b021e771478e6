"""Redis keys that name their owner: taken atomically, extended and deleted only by that owner, expiring if the
owner dies. The claims of batched embedding and the one-task-per-collection slots of admin tasks use them."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)

# Take the key, or extend it if ``owner`` holds it already; returns whoever holds it afterwards. One script, so
# that a key deleted between a failed SET NX and a GET can never read as "held by nobody".
_TAKE = """
local holder = redis.call('GET', KEYS[1])
if not holder then
    redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
    return ARGV[1]
end
if holder == ARGV[1] then
    redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return holder
"""

# ARGV[2] == '' deletes, anything else is the new lifetime: one loop for both owner-only operations.
_TOUCH_IF_OWNER = """
local touched = 0
for i, key in ipairs(KEYS) do
    if redis.call('GET', key) == ARGV[1] then
        if ARGV[2] == '' then redis.call('DEL', key) else redis.call('EXPIRE', key, ARGV[2]) end
        touched = touched + 1
    end
end
return touched
"""


class OwnedKeys:
    """Keys ``<prefix><name>`` holding their owner's id, living ``ttl_s`` seconds unless refreshed."""

    def __init__(self, client: Any, prefix: str, ttl_s: int) -> None:
        self._redis = client  # decode_responses=True
        self._prefix = prefix
        self.ttl_s = ttl_s
        self._take = client.register_script(_TAKE)
        self._touch = client.register_script(_TOUCH_IF_OWNER)

    def _keys(self, names: Sequence[str]) -> list[str]:
        return [self._prefix + name for name in names]

    def take(self, name: str, owner: str, ttl_s: int | None = None) -> str:
        """Take ``name`` for ``owner`` (extended if ``owner`` holds it already); returns who holds it now."""
        return str(self._take(keys=self._keys([name]), args=[owner, ttl_s or self.ttl_s]))

    def holder(self, name: str) -> str | None:
        """Who holds ``name`` now, if anyone."""
        return self._redis.get(self._prefix + name)  # type: ignore[no-any-return]

    def refresh(self, names: Sequence[str], owner: str, ttl_s: int | None = None) -> int:
        """Extend ``owner``'s keys among ``names``; returns how many it still held."""
        if not names:
            return 0
        return int(self._touch(keys=self._keys(names), args=[owner, ttl_s or self.ttl_s]))

    def release(self, names: Sequence[str], owner: str) -> int:
        """Delete ``owner``'s keys among ``names`` (never another owner's); returns how many it held."""
        return int(self._touch(keys=self._keys(names), args=[owner, ""])) if names else 0


@contextmanager
def kept_alive(keys: OwnedKeys, names: list[str], owner: str, ttl_s: int | None = None) -> Iterator[None]:
    """Refresh ``owner``'s keys in ``names`` (a list the block may extend) every third of their lifetime, on a
    daemon thread, while the block runs: waits on locks, model loading and long upserts are all covered."""
    import redis

    lifetime = ttl_s or keys.ttl_s
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(lifetime / 3):
            try:
                keys.refresh(list(names), owner, lifetime)
            except redis.RedisError as exc:  # they may run out: their jobs' own tasks then take over
                log.warning("could not refresh %d keys of %s: %s", len(names), owner, exc)

    thread = threading.Thread(target=renew, name=f"keep-{owner}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)
