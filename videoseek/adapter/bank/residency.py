"""Which adapters are resident, in which pools, within a budget of bytes: the bank's LRU bookkeeping.

The budget counts what the pools hold (every allocated slot, free ones included), not only the resident
adapters. Inserting an adapter needs one slot in the pool of each tower it adapts; to make that fit:

1. evict least recently used adapters (never the ones ``pinned`` for the forward in progress) until the free
   slots the pools hold would cover what is still missing;
2. give free slots back (compact pools, most free bytes first; an empty one is dropped);
3. grow a pool with no free slot by 1.25x, but only as far as the budget has room.

After evictions a pool whose slots are more than half free is compacted, and an empty pool is dropped. So the
pools never hold more than ``max_bytes``, except transiently while a pool is copied (old and new tensors coexist)
and for one forward whose own (pinned) adapters do not fit (logged; :meth:`Residency.trim` goes back within
budget after it). A bank at its budget that switches to another rank copies the shrinking pool on each insert:
memory is bounded, at the cost of that copy.

Not thread-safe: the bank calls it under its lock.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch

from videoseek.adapter.bank.pools import PoolKey, TowerPool, slot_bytes
from videoseek.adapter.config import BackboneShape, Tower

log = logging.getLogger(__name__)

TowerWeights = Callable[[Tower], Sequence[torch.Tensor]]  # an adapter's tensors for one tower, pool layout


@dataclass
class Resident:
    ranks: dict[Tower, int]  # the towers it adapts -> its rank (its slot is in pool (tower, rank))
    nbytes: int


class Residency:
    """The resident adapters of one bank (least recently used first) and the pools that hold their weights."""

    def __init__(
        self, shape: BackboneShape, max_bytes: int, device: torch.device, dtype: torch.dtype
    ) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be > 0, got {max_bytes}")
        self.shape, self.max_bytes = shape, max_bytes
        self.device, self.dtype = device, dtype
        self.pools: dict[PoolKey, TowerPool] = {}
        self.resident: OrderedDict[str, Resident] = OrderedDict()
        self.resident_bytes = 0  # the resident adapters' slots: what they use, not what the pools hold
        self.evictions = 0
        self.compactions = 0

    def __contains__(self, version: object) -> bool:
        return version in self.resident

    def held_bytes(self) -> int:
        """Bytes the pools allocate, free slots included: what ``max_bytes`` bounds."""
        return sum(pool.held_bytes for pool in self.pools.values())

    def touch(self, versions: Iterable[str]) -> None:
        """Mark resident ``versions`` most recently used, in that order."""
        for version in versions:
            self.resident.move_to_end(version)

    def placement(self, version: str, tower: Tower) -> tuple[TowerPool, int] | None:
        """The pool and slot of resident ``version`` on ``tower``; None if it does not adapt that tower."""
        rank = self.resident[version].ranks.get(tower)
        if rank is None:
            return None
        pool = self.pools[(tower, rank)]
        return pool, pool.slot_of[version]

    def insert(
        self, version: str, rank: int, towers: Sequence[Tower], weights: TowerWeights, pinned: frozenset[str]
    ) -> None:
        """Make ``version`` (an adapter of ``rank`` on ``towers``) resident, or most recently used if it is.

        ``weights(tower)`` is only called once room is made, one tower at a time. Raises ValueError if the
        adapter alone needs more than ``max_bytes``.
        """
        if version in self.resident:
            self.resident.move_to_end(version)
            return
        keys = [(tower, rank) for tower in towers]
        nbytes = sum(self._slot_bytes(key) for key in keys)
        if nbytes > self.max_bytes:
            raise ValueError(
                f"adapter {version[:12]} needs {nbytes} bytes, more than max_bytes={self.max_bytes}"
            )
        released = self._make_room(keys, pinned)
        for i, key in enumerate(keys):
            pool = self._pool(key)
            if not pool.free:  # grow into the room left once the towers still to come have their slot
                room = self.max_bytes - self.held_bytes() - self._need(keys[i + 1 :])
                pool.grow(room // pool.slot_bytes)
            pool.put(version, weights(key[0]))
        self.resident[version] = Resident(ranks=dict(keys), nbytes=nbytes)
        self.resident_bytes += nbytes
        self._tidy(released)

    def evict(self, version: str) -> bool:
        """Forget ``version`` and give back what its pools no longer need; False if it was not resident."""
        if version not in self.resident:
            return False
        self._tidy(self._release(version))
        return True

    def trim(self) -> None:
        """Back within budget after a forward whose pinned adapters did not fit."""
        self._tidy(self._make_room([], frozenset()))

    # --- budget arithmetic: held_bytes() is the pools' allocated bytes ---------------------------------

    def _slot_bytes(self, key: PoolKey) -> int:
        shape = self.shape.tower(key[0])
        return slot_bytes(2 * shape.layers, shape.width, key[1], self.dtype)

    def _has_free(self, key: PoolKey) -> bool:
        pool = self.pools.get(key)
        return pool is not None and bool(pool.free)

    def _need(self, keys: Sequence[PoolKey]) -> int:
        """Bytes that giving each of ``keys`` one new slot would add (a pool with a free slot adds none)."""
        return sum(self._slot_bytes(key) for key in keys if not self._has_free(key))

    def _spare(self, key: PoolKey, keys: Sequence[PoolKey]) -> int:
        """Free slots a compaction keeps: one for a pool about to receive an adapter, since it uses it."""
        return 1 if key in keys and self._has_free(key) else 0

    def _reclaimable(self, key: PoolKey, keys: Sequence[PoolKey]) -> int:
        pool = self.pools[key]
        return (len(pool.free) - self._spare(key, keys)) * pool.slot_bytes

    # --- the steps ----------------------------------------------------------------------------------------

    def _pool(self, key: PoolKey) -> TowerPool:
        if key not in self.pools:
            shape = self.shape.tower(key[0])
            self.pools[key] = TowerPool(2 * shape.layers, shape.width, key[1], self.device, self.dtype)
        return self.pools[key]

    def _release(self, version: str) -> set[PoolKey]:
        """Forget ``version`` and free its slots (memory is given back by :meth:`_tidy`/:meth:`_reclaim`)."""
        resident = self.resident.pop(version, None)
        if resident is None:
            return set()
        keys = {(tower, rank) for tower, rank in resident.ranks.items()}
        for key in keys:
            self.pools[key].release(version)
        self.resident_bytes -= resident.nbytes
        self.evictions += 1
        return keys

    def _tidy(self, keys: set[PoolKey]) -> None:
        """After releases from ``keys``: drop emptied pools, compact those more than half free."""
        for key in keys:
            pool = self.pools.get(key)
            if pool is None:
                continue
            if not pool.used:
                del self.pools[key]
            elif pool.sparse:
                pool.compact()
                self.compactions += 1

    def _reclaim(self, shortfall: int, keys: Sequence[PoolKey]) -> None:
        """Compact pools, most free bytes first, until ``shortfall`` bytes are given back."""
        by_free = sorted(self.pools, key=lambda k: self._reclaimable(k, keys), reverse=True)
        for key in by_free:
            if shortfall <= 0 or self._reclaimable(key, keys) <= 0:
                return
            shortfall -= self._reclaimable(key, keys)
            pool = self.pools[key]
            if pool.used or self._spare(key, keys):
                pool.compact(self._spare(key, keys))
                self.compactions += 1
            else:
                del self.pools[key]

    def _make_room(self, keys: Sequence[PoolKey], pinned: frozenset[str]) -> set[PoolKey]:
        """Evict least recently used adapters (not ``pinned``) and give back free slots until one new slot in
        each of ``keys`` fits the budget; returns the pools adapters were released from."""
        released: set[PoolKey] = set()
        while True:
            shortfall = self.held_bytes() + self._need(keys) - self.max_bytes
            if shortfall <= sum(self._reclaimable(k, keys) for k in self.pools):
                break  # free slots cover it: no need to evict anything more
            victim = next((v for v in self.resident if v not in pinned), None)
            if victim is None:
                break
            released |= self._release(victim)
        if shortfall > 0:
            self._reclaim(shortfall, keys)
        over = self.held_bytes() + self._need(keys) - self.max_bytes
        if over > 0:
            log.warning(
                "adapter bank over budget (%d > %d bytes) for one batch",
                over + self.max_bytes,
                self.max_bytes,
            )
        return released
