"""Redis keys that name their owner: taken atomically, extended and deleted only by that owner, expiring if the
owner dies. The claims of batched embedding and the one-task-per-collection slots of admin tasks use them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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

_REFRESH_IF_OWNER = """
local refreshed = 0
for i, key in ipairs(KEYS) do
    if redis.call('GET', key) == ARGV[1] then
        redis.call('EXPIRE', key, ARGV[2])
        refreshed = refreshed + 1
    end
end
return refreshed
"""

_RELEASE_IF_OWNER = """
local released = 0
for i, key in ipairs(KEYS) do
    if redis.call('GET', key) == ARGV[1] then
        redis.call('DEL', key)
        released = released + 1
    end
end
return released
"""


class OwnedKeys:
    """Keys ``<prefix><name>`` holding their owner's id, living ``ttl_s`` seconds unless refreshed."""

    def __init__(self, client: Any, prefix: str, ttl_s: int) -> None:
        self._redis = client  # decode_responses=True
        self._prefix = prefix
        self.ttl_s = ttl_s
        self._take = client.register_script(_TAKE)
        self._refresh = client.register_script(_REFRESH_IF_OWNER)
        self._release = client.register_script(_RELEASE_IF_OWNER)

    def _keys(self, names: Sequence[str]) -> list[str]:
        return [self._prefix + name for name in names]

    def take(self, name: str, owner: str) -> str:
        """Take ``name`` for ``owner`` (extended if ``owner`` holds it already); returns who holds it now."""
        return str(self._take(keys=self._keys([name]), args=[owner, self.ttl_s]))

    def holder(self, name: str) -> str | None:
        """Who holds ``name`` now, if anyone."""
        return self._redis.get(self._prefix + name)  # type: ignore[no-any-return]

    def refresh(self, names: Sequence[str], owner: str) -> int:
        """Extend ``owner``'s keys among ``names``; returns how many it still held."""
        return int(self._refresh(keys=self._keys(names), args=[owner, self.ttl_s])) if names else 0

    def release(self, names: Sequence[str], owner: str) -> int:
        """Delete ``owner``'s keys among ``names`` (never another owner's); returns how many it held."""
        return int(self._release(keys=self._keys(names), args=[owner])) if names else 0
