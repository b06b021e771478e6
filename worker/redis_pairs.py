"""The pair store of distributed mode: a collection's training pairs in Redis, shared by the API and every worker.

The same interface as the embedded SQLite store (:class:`videoseek.pairs.PairStore`); the contract tests run
both. Per collection, under ``<prefix>pairs:<collection>:``:

- ``rec``: a hash, pair id -> the pair as JSON (without its ``seq``);
- ``seq``: a counter giving each new pair its place;
- ``all``, ``kind:<kind>``, ``video:<video id>``: sorted sets of pair ids scored by that place (the listings,
  paged by score: a cursor is the last place read);
- ``videos``: the ids of the videos that have pairs (what deleting the collection must find).

Each write is one Lua script, so the indexes never disagree with the records, whoever writes at once. The
scripts build their key names from the collection's base key: every key of a collection is reached from it,
on the single Redis a deployment uses (Celery's transport needs one too).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any

from videoseek.pairs import (
    PAIR_KINDS,
    PairKind,
    PairPage,
    PairStore,
    TrainingPair,
    check_kind,
    check_limit,
)
from worker.redis_client import redis_client

if TYPE_CHECKING:
    import redis

# KEYS[1]: the collection's base key; ARGV: (id, kind, video id, record JSON) for each pair. Returns how many
# were new. A pair stored already keeps its place; its kind (a feedback verdict) may change.
_ADD = """
local base = KEYS[1]
local added = 0
for i = 1, #ARGV, 4 do
    local id, kind, video, record = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
    local old = redis.call('HGET', base .. 'rec', id)
    if old then
        local before = cjson.decode(old)
        local seq = redis.call('ZSCORE', base .. 'all', id)
        if before['kind'] ~= kind then
            redis.call('ZREM', base .. 'kind:' .. before['kind'], id)
            redis.call('ZADD', base .. 'kind:' .. kind, seq, id)
        end
    else
        local seq = redis.call('INCR', base .. 'seq')
        redis.call('ZADD', base .. 'all', seq, id)
        redis.call('ZADD', base .. 'kind:' .. kind, seq, id)
        redis.call('ZADD', base .. 'video:' .. video, seq, id)
        redis.call('SADD', base .. 'videos', video)
        added = added + 1
    end
    redis.call('HSET', base .. 'rec', id, record)
end
return added
"""
# KEYS[1]: base; ARGV[1]: the pair id. Returns {record JSON, place}, or nil when there is no such pair.
_DELETE = """
local base = KEYS[1]
local id = ARGV[1]
local old = redis.call('HGET', base .. 'rec', id)
if not old then
    return nil
end
local before = cjson.decode(old)
local seq = redis.call('ZSCORE', base .. 'all', id)
local video = base .. 'video:' .. before['video_id']
redis.call('HDEL', base .. 'rec', id)
redis.call('ZREM', base .. 'all', id)
redis.call('ZREM', base .. 'kind:' .. before['kind'], id)
redis.call('ZREM', video, id)
if redis.call('ZCARD', video) == 0 then
    redis.call('SREM', base .. 'videos', before['video_id'])
end
return {old, seq}
"""
# KEYS[1]: base; ARGV[1]: the video id. Returns how many pairs were removed.
_DELETE_VIDEO = """
local base = KEYS[1]
local video = base .. 'video:' .. ARGV[1]
local ids = redis.call('ZRANGE', video, 0, -1)
for _, id in ipairs(ids) do
    local old = redis.call('HGET', base .. 'rec', id)
    if old then
        redis.call('ZREM', base .. 'kind:' .. cjson.decode(old)['kind'], id)
    end
    redis.call('HDEL', base .. 'rec', id)
    redis.call('ZREM', base .. 'all', id)
end
redis.call('DEL', video)
redis.call('SREM', base .. 'videos', ARGV[1])
return #ids
"""
# KEYS[1]: base; ARGV: every pair kind. Returns how many pairs were removed.
_DELETE_COLLECTION = """
local base = KEYS[1]
local removed = redis.call('HLEN', base .. 'rec')
for _, video in ipairs(redis.call('SMEMBERS', base .. 'videos')) do
    redis.call('DEL', base .. 'video:' .. video)
end
for _, kind in ipairs(ARGV) do
    redis.call('DEL', base .. 'kind:' .. kind)
end
redis.call('DEL', base .. 'rec', base .. 'all', base .. 'seq', base .. 'videos')
return removed
"""


def _record(pair: TrainingPair) -> str:
    values = pair.to_dict()
    del values["seq"]  # the sorted sets hold it
    return json.dumps(values, separators=(",", ":"))


def _pair(record: str, seq: float) -> TrainingPair:
    return TrainingPair.from_dict({**json.loads(record), "seq": int(seq)})


class RedisPairStore(PairStore):
    """Training pairs in Redis under ``prefix`` (distributed mode: API and workers share them)."""

    def __init__(
        self,
        url: str,
        prefix: str = "videoseek:",
        client: redis.Redis | None = None,
        *,
        timeout_s: float = 30.0,
    ) -> None:
        self.prefix = prefix
        # decode_responses=True: every value is a str (redis-py's stubs cannot express that).
        self._redis: Any = client or redis_client(url, timeout_s, decode_responses=True)
        self._add = self._redis.register_script(_ADD)
        self._delete = self._redis.register_script(_DELETE)
        self._delete_video = self._redis.register_script(_DELETE_VIDEO)
        self._delete_collection = self._redis.register_script(_DELETE_COLLECTION)

    def _base(self, collection: str) -> str:
        return f"{self.prefix}pairs:{collection}:"

    def add(self, pairs: Sequence[TrainingPair]) -> int:
        by_collection: dict[str, list[TrainingPair]] = {}
        for pair in pairs:
            by_collection.setdefault(pair.collection, []).append(pair)
        added = 0
        for collection, members in by_collection.items():
            args = [v for p in members for v in (p.id, check_kind(p.kind), p.video_id, _record(p))]
            added += int(self._add(keys=[self._base(collection)], args=args))
        return added

    def get(self, collection: str, pair_id: str) -> TrainingPair | None:
        base = self._base(collection)
        pipe = self._redis.pipeline()
        pipe.hget(base + "rec", pair_id)
        pipe.zscore(base + "all", pair_id)
        record, seq = pipe.execute()
        return None if record is None or seq is None else _pair(record, seq)

    def list(
        self,
        collection: str,
        *,
        kinds: Collection[PairKind] | None = None,
        video_id: str | None = None,
        after: int = 0,
        limit: int = 100,
    ) -> PairPage:
        check_limit(limit)
        base = self._base(collection)
        wanted = None if kinds is None else {check_kind(k) for k in kinds}
        if wanted is not None and not wanted:
            return PairPage([], None)
        if video_id is not None:  # a video has few pairs: read its set, keep the kinds asked for
            keep = (lambda p: p.kind in wanted) if wanted is not None else (lambda p: True)
            return self._scan(base, f"video:{video_id}", after, limit, keep)
        if wanted is None:
            return self._scan(base, "all", after, limit, lambda p: True)
        # Several kinds: the first limit + 1 of each kind after the cursor, merged by place.
        pages = [self._scan(base, f"kind:{kind}", after, limit, lambda p: True) for kind in sorted(wanted)]
        merged = sorted((p for page in pages for p in page.pairs), key=lambda p: p.seq)
        more = len(merged) > limit or any(page.next_after is not None for page in pages)
        shown = merged[:limit]
        return PairPage(shown, shown[-1].seq if more and shown else None)

    def _scan(
        self, base: str, index: str, after: int, limit: int, keep: Callable[[TrainingPair], bool]
    ) -> PairPage:
        """Up to ``limit`` kept pairs of one sorted set after place ``after``, read in batches."""
        found: list[TrainingPair] = []
        cursor = after
        while True:
            batch = self._redis.zrangebyscore(
                base + index, f"({cursor}", "+inf", start=0, num=limit + 1, withscores=True
            )
            if not batch:
                return PairPage(found, None)
            records = self._redis.hmget(base + "rec", [pair_id for pair_id, _ in batch])
            for (_, seq), record in zip(batch, records, strict=True):
                cursor = int(seq)
                if record is None:  # deleted between the two reads
                    continue
                pair = _pair(record, seq)
                if not keep(pair):
                    continue
                if len(found) == limit:  # one more exists: the page is full
                    return PairPage(found, found[-1].seq)
                found.append(pair)
            if len(batch) <= limit:  # the set held no more
                return PairPage(found, None)

    def delete(self, collection: str, pair_id: str) -> TrainingPair | None:
        answer = self._delete(keys=[self._base(collection)], args=[pair_id])
        if answer is None:
            return None
        record, seq = answer
        return _pair(record, float(seq))

    def delete_video(self, collection: str, video_id: str) -> int:
        return int(self._delete_video(keys=[self._base(collection)], args=[video_id]))

    def delete_collection(self, collection: str) -> int:
        return int(self._delete_collection(keys=[self._base(collection)], args=list(PAIR_KINDS)))

    def counts(self, collection: str) -> dict[PairKind, int]:
        base = self._base(collection)
        pipe = self._redis.pipeline()
        for kind in PAIR_KINDS:
            pipe.zcard(f"{base}kind:{kind}")
        return {kind: int(n) for kind, n in zip(PAIR_KINDS, pipe.execute(), strict=True)}

    def ping(self) -> None:
        self._redis.ping()

    def close(self) -> None:
        self._redis.close()
