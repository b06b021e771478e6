"""Many adapters served by one frozen CLIP: one forward pass over rows that each name their own adapter.

Resident adapters live stacked: for each (tower, rank) there is one tensor per kind of weight, shaped
``[sites, slots, ...]``, and an adapter is one slot of each. A forward gathers each row's slot
(``index_select``) and applies all rows' adapters with two batched matmuls per site (``baddbmm``); a batch on a
single adapter uses plain matmuls on views of its slot. Rows naming no adapter get an exact zero delta, so they
equal the plain CLIP. Residency is an LRU bounded by the bytes the pools hold (free slots included, see
:class:`AdapterBank`); evicted adapters reload through the loader.

The routing of the current forward is held in a ``ContextVar``: the model's sites are shared, but a forward
running elsewhere without routing (plain encoding on the same cached model) sees no adapters.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from videoseek.adapter.config import (
    SITES,
    TOWERS,
    BackboneShape,
    Site,
    Tower,
    shared_prefix,
    site_prefix,
)
from videoseek.adapter.files import AdapterFile, AdapterFileError, load_adapter
from videoseek.adapter.layer import adapter_delta, batched_adapter_delta
from videoseek.adapter.model import AdapterSite, AlreadyAdapted, backbone_shape, wrap_sites
from videoseek.clip import LoadedClip

log = logging.getLogger(__name__)

AdapterLoader = Callable[[str], AdapterFile]
_PoolKey = tuple[Tower, int]  # (tower, rank): adapters of one rank share one pool per tower
_VERSION_RE = re.compile(r"[0-9a-f]{64}")


class AdapterNotFound(LookupError):
    """An adapter version is neither resident nor loadable."""


def _site_index(layer: int, site: Site) -> int:
    return 2 * layer + SITES.index(site)


class _TowerPool:
    """Stacked weights of the resident adapters of one rank for one tower; one slot per adapter.

    nn.Linear layout (``[out, in]``, the faster one for these thin matmuls): ``down [S, C, r, d]``,
    ``down_b [S, C, r]``, ``up [S, C, d, r]``, ``up_b [S, C, d]`` with S = 2 * layers sites and C the capacity.
    The up-projection is stored whole (unique and shared slices concatenated), so the forward does not care
    whether an adapter shares. ``slot_of`` maps each resident version to its slot; :meth:`compact` renumbers
    slots, so callers look slots up here and never keep them across a bank operation.
    """

    def __init__(self, sites: int, width: int, rank: int, device: torch.device, dtype: torch.dtype) -> None:
        self.sites, self.width, self.rank = sites, width, rank
        self.device, self.dtype = device, dtype
        self.capacity = 0
        self.free: list[int] = []
        self.slot_of: dict[str, int] = {}
        self.down, self.down_b, self.up, self.up_b = self._allocate(0)

    @property
    def slot_bytes(self) -> int:
        return _slot_bytes(self.sites, self.width, self.rank, self.dtype)

    @property
    def held_bytes(self) -> int:
        """Bytes allocated for all slots, free ones included: what the bank's budget counts."""
        return self.capacity * self.slot_bytes

    @property
    def used(self) -> int:
        return len(self.slot_of)

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return self.down, self.down_b, self.up, self.up_b

    def _allocate(self, capacity: int) -> tuple[torch.Tensor, ...]:
        s, c, r, d = self.sites, capacity, self.rank, self.width
        return tuple(
            torch.empty(dims, device=self.device, dtype=self.dtype)
            for dims in ((s, c, r, d), (s, c, r), (s, c, d, r), (s, c, d))
        )

    def _reshape(self, capacity: int, keep: list[int] | None = None) -> None:
        """Reallocate at ``capacity`` slots holding the slots ``keep`` (in that order) as slots 0, 1, ...;
        ``None`` keeps every slot where it is.

        For the copy the old and the new tensors coexist (the peak is both pools' bytes); a compaction gathers
        one site at a time so its temporary stays one site's size.
        """
        new = self._allocate(capacity)
        index = None if keep is None else torch.tensor(keep, dtype=torch.long, device=self.device)
        for target, old in zip(new, self.tensors(), strict=True):
            if index is None:
                target[:, : old.shape[1]].copy_(old)
                continue
            for site in range(self.sites):
                target[site, : len(index)].copy_(old[site].index_select(0, index))
        self.down, self.down_b, self.up, self.up_b = new
        self.capacity = capacity

    def grow(self, most: int) -> None:
        """Add free slots: 1.25x (at least 4), but never more than ``most`` (the budget's room, >= 1)."""
        extra = min(max(4, math.ceil(self.capacity * 0.25)), max(1, most))
        old_capacity = self.capacity
        self._reshape(old_capacity + extra)
        self.free.extend(range(self.capacity - 1, old_capacity - 1, -1))  # lowest slot popped first

    def compact(self, spare: int = 0) -> None:
        """Shrink to the resident slots plus ``spare`` free ones; resident adapters get slots 0, 1, ..."""
        versions = sorted(self.slot_of, key=self.slot_of.__getitem__)
        self._reshape(len(versions) + spare, [self.slot_of[v] for v in versions])
        self.slot_of = {version: slot for slot, version in enumerate(versions)}
        self.free = list(range(self.capacity - 1, len(versions) - 1, -1))

    def put(self, version: str, tensors: Sequence[torch.Tensor]) -> None:
        if not self.free:
            raise RuntimeError("no free slot: the bank grows the pool first")
        slot = self.free.pop()
        for target, value in zip(self.tensors(), tensors, strict=True):
            target[:, slot].copy_(value)
        self.slot_of[version] = slot

    def release(self, version: str) -> None:
        self.free.append(self.slot_of.pop(version))

    @property
    def sparse(self) -> bool:
        """More than half the slots free: worth a compaction after releases."""
        return 2 * len(self.free) > self.capacity


def _slot_bytes(sites: int, width: int, rank: int, dtype: torch.dtype) -> int:
    return sites * (2 * width * rank + rank + width) * dtype.itemsize


def _stack_tower(adapter: AdapterFile, tower: Tower) -> tuple[torch.Tensor, ...]:
    """An adapter file's tensors for one tower in the pool layout (``[S, r, d]``, ``[S, r]``, ...)."""
    t = adapter.tensors
    downs, down_bs, ups, up_bs = [], [], [], []
    for layer in range(adapter.shape.tower(tower).layers):
        for site in SITES:
            prefix, shared = site_prefix(tower, layer, site), shared_prefix(layer, site)
            up_w, up_b = t[f"{prefix}.up.weight"], t[f"{prefix}.up.bias"]
            if f"{shared}.weight" in t:
                up_w = torch.cat([up_w, t[f"{shared}.weight"]], dim=0)
                up_b = torch.cat([up_b, t[f"{shared}.bias"]], dim=0)
            downs.append(t[f"{prefix}.down.weight"])
            down_bs.append(t[f"{prefix}.down.bias"])
            ups.append(up_w)
            up_bs.append(up_b)
    return torch.stack(downs), torch.stack(down_bs), torch.stack(ups), torch.stack(up_bs)


@dataclass
class _Resident:
    ranks: dict[Tower, int]  # the towers it adapts -> its rank (its slot is in pool (tower, rank))
    nbytes: int


@dataclass
class _PoolRoute:
    pool: _TowerPool
    slots: torch.Tensor  # one slot per routed row
    rows: torch.Tensor | None  # batch rows using this pool; None: every row, in order
    single_slot: int | None  # set when every routed row uses the same adapter


@dataclass
class _Route:
    tower: Tower
    pools: list[_PoolRoute]

    def delta(self, site: int, y: torch.Tensor, batch_first: bool) -> torch.Tensor:
        x = y if batch_first else y.transpose(0, 1)
        out: torch.Tensor | None = None
        for route in self.pools:
            pool = route.pool
            rows_x = x if route.rows is None else x.index_select(0, route.rows)
            if route.single_slot is not None:
                # One adapter for all these rows: plain matmuls on views of its slot, nothing gathered.
                s = route.single_slot
                part = adapter_delta(
                    rows_x, pool.down[site, s], pool.down_b[site, s], pool.up[site, s], pool.up_b[site, s]
                )
            else:
                part = batched_adapter_delta(
                    rows_x,
                    pool.down[site].index_select(0, route.slots),
                    pool.down_b[site].index_select(0, route.slots),
                    pool.up[site].index_select(0, route.slots),
                    pool.up_b[site].index_select(0, route.slots),
                )
            if route.rows is None:
                out = part
            else:
                out = torch.zeros_like(x) if out is None else out
                out.index_copy_(0, route.rows, part)
        assert out is not None
        return out if batch_first else out.transpose(0, 1)


_ACTIVE_ROUTE: ContextVar[_Route | None] = ContextVar("videoseek_adapter_route", default=None)


class RoutedDelta(nn.Module):
    """The delta of one site in bank mode: whatever the active route says, or nothing."""

    def __init__(self, tower: Tower, site: int, batch_first: bool) -> None:
        super().__init__()
        self.tower, self.site, self.batch_first = tower, site, batch_first

    def forward(self, y: torch.Tensor) -> torch.Tensor | None:
        route = _ACTIVE_ROUTE.get()
        if route is None or route.tower != self.tower or not route.pools:
            return None
        return route.delta(self.site, y, self.batch_first)


def _install_routing(model: nn.Module) -> None:
    sites = [m for m in model.modules() if isinstance(m, AdapterSite)]
    if sites and all(isinstance(s.delta, RoutedDelta) for s in sites):
        return  # another bank already routed this model: routing is stateless, share it
    if sites:
        raise AlreadyAdapted("this CLIP has trainable adapters injected; an AdapterBank needs a plain one")
    wrap_sites(
        model,
        TOWERS,
        lambda tower, layer, site, batch_first: RoutedDelta(tower, _site_index(layer, site), batch_first),
    )


class AdapterBank:
    """Any number of adapters on one frozen CLIP, LRU-bounded by ``max_bytes`` of adapter weight memory.

    The budget counts what the pools hold (every allocated slot, free ones included), not only the resident
    adapters: a pool grows by 1.25x only as far as the budget has room, free slots are given back (the pool is
    compacted) before any adapter is evicted to make room, a pool whose slots are more than half free after
    evictions is compacted, and an empty pool is dropped. So with rank churn the pools never hold more than
    ``max_bytes``, except transiently while a pool is copied (old and new tensors coexist for the copy) and
    for one forward whose own adapters do not fit (logged). A bank at its budget that switches to another rank
    copies the shrinking pool on each insert: memory is bounded, at the cost of that copy.

    ``loader(version)`` fetches an adapter that is not resident (see :meth:`from_directory`). Methods are
    thread-safe; forwards run one at a time.
    """

    def __init__(self, clip: LoadedClip, max_bytes: int, loader: AdapterLoader | None = None) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be > 0, got {max_bytes}")
        self.clip = clip
        self.max_bytes = max_bytes
        self._loader = loader
        self._lock = threading.RLock()
        self._shape: BackboneShape = backbone_shape(clip.model)
        reference = next(clip.model.parameters())
        self._device, self._dtype = reference.device, reference.dtype
        self._pools: dict[_PoolKey, _TowerPool] = {}
        self._resident: OrderedDict[str, _Resident] = OrderedDict()
        self._bytes = 0
        self.loads = 0
        self.evictions = 0
        self.compactions = 0
        _install_routing(clip.model)

    @classmethod
    def from_directory(cls, clip: LoadedClip, root: Path, max_bytes: int) -> AdapterBank:
        """A bank that reloads adapters from ``root/<version>`` (the layout ``store_adapter`` writes)."""

        def load(version: str) -> AdapterFile:
            if not _VERSION_RE.fullmatch(version):
                raise AdapterNotFound(f"invalid adapter version {version!r}: expected a sha256 hex digest")
            adapter = load_adapter(root / version, expected_base=clip.identity)
            if adapter.version != version:
                raise AdapterFileError(f"{root / version} holds adapter {adapter.version}, not {version}")
            return adapter

        return cls(clip, max_bytes, load)

    # --- residency -------------------------------------------------------------------------------------

    def __contains__(self, version: object) -> bool:
        with self._lock:
            return version in self._resident

    @property
    def resident_versions(self) -> list[str]:
        """Resident adapters, least recently used first."""
        with self._lock:
            return list(self._resident)

    @property
    def resident_bytes(self) -> int:
        """Bytes of the resident adapters' slots (what they use, not what the pools hold)."""
        with self._lock:
            return self._bytes

    @property
    def held_bytes(self) -> int:
        """Bytes the pools' tensors really occupy (free slots included): what ``max_bytes`` bounds."""
        with self._lock:
            return sum(t.untyped_storage().nbytes() for pool in self._pools.values() for t in pool.tensors())

    @property
    def pools(self) -> dict[str, dict[str, int]]:
        """Per ``<tower>/r<rank>`` pool: ``capacity`` (slots allocated) and ``used`` (adapters resident)."""
        with self._lock:
            return {
                f"{tower}/r{rank}": {"capacity": pool.capacity, "used": pool.used}
                for (tower, rank), pool in sorted(self._pools.items())
            }

    def add(self, version: str, adapter: AdapterFile) -> None:
        """Make ``adapter`` resident under ``version`` (evicting least recently used ones as needed)."""
        self._check(adapter)
        with self._lock:
            self._insert(version, adapter, pinned=frozenset())

    def evict(self, version: str) -> bool:
        """Drop ``version`` from memory (it reloads on demand); False if it was not resident."""
        with self._lock:
            if version not in self._resident:
                return False
            self._tidy(self._release(version))
            return True

    def _check(self, adapter: AdapterFile) -> None:
        adapter.check_base(self.clip.identity)
        if adapter.shape != self._shape:
            raise AdapterFileError(f"adapter shape {adapter.shape} does not fit this CLIP ({self._shape})")

    # Budget arithmetic: ``_held`` is the pools' allocated bytes, kept equal to ``held_bytes`` by construction.

    def _slot_bytes(self, key: _PoolKey) -> int:
        shape = self._shape.tower(key[0])
        return _slot_bytes(2 * shape.layers, shape.width, key[1], self._dtype)

    def _held(self) -> int:
        return sum(pool.held_bytes for pool in self._pools.values())

    def _has_free(self, key: _PoolKey) -> bool:
        pool = self._pools.get(key)
        return pool is not None and bool(pool.free)

    def _need(self, keys: Sequence[_PoolKey]) -> int:
        """Bytes that giving each of ``keys`` one new slot would add (a pool with a free slot adds none)."""
        return sum(self._slot_bytes(key) for key in keys if not self._has_free(key))

    def _spare(self, key: _PoolKey, keys: Sequence[_PoolKey]) -> int:
        """Free slots a compaction keeps: one for a pool about to receive an adapter, since it uses it."""
        return 1 if key in keys and self._has_free(key) else 0

    def _reclaimable(self, key: _PoolKey, keys: Sequence[_PoolKey]) -> int:
        pool = self._pools[key]
        return (len(pool.free) - self._spare(key, keys)) * pool.slot_bytes

    def _pool(self, key: _PoolKey) -> _TowerPool:
        if key not in self._pools:
            shape = self._shape.tower(key[0])
            self._pools[key] = _TowerPool(2 * shape.layers, shape.width, key[1], self._device, self._dtype)
        return self._pools[key]

    def _release(self, version: str) -> set[_PoolKey]:
        """Forget ``version`` and free its slots (memory is given back by :meth:`_tidy`/:meth:`_reclaim`)."""
        resident = self._resident.pop(version, None)
        if resident is None:
            return set()
        keys = {(tower, rank) for tower, rank in resident.ranks.items()}
        for key in keys:
            self._pools[key].release(version)
        self._bytes -= resident.nbytes
        self.evictions += 1
        return keys

    def _tidy(self, keys: set[_PoolKey]) -> None:
        """After releases from ``keys``: drop emptied pools, compact those more than half free."""
        for key in keys:
            pool = self._pools.get(key)
            if pool is None:
                continue
            if not pool.used:
                del self._pools[key]
            elif pool.sparse:
                pool.compact()
                self.compactions += 1

    def _reclaim(self, shortfall: int, keys: Sequence[_PoolKey]) -> None:
        """Compact pools, most free bytes first, until ``shortfall`` bytes are given back."""
        by_free = sorted(self._pools, key=lambda k: self._reclaimable(k, keys), reverse=True)
        for key in by_free:
            if shortfall <= 0 or self._reclaimable(key, keys) <= 0:
                return
            shortfall -= self._reclaimable(key, keys)
            pool = self._pools[key]
            if pool.used or self._spare(key, keys):
                pool.compact(self._spare(key, keys))
                self.compactions += 1
            else:
                del self._pools[key]

    def _make_room(self, keys: Sequence[_PoolKey], pinned: frozenset[str]) -> set[_PoolKey]:
        """Evict least recently used adapters (not ``pinned``) and give back free slots until one new slot in
        each of ``keys`` fits the budget; returns the pools adapters were released from."""
        released: set[_PoolKey] = set()
        while True:
            shortfall = self._held() + self._need(keys) - self.max_bytes
            if shortfall <= sum(self._reclaimable(k, keys) for k in self._pools):
                break  # free slots cover it: no need to evict anything more
            victim = next((v for v in self._resident if v not in pinned), None)
            if victim is None:
                break
            released |= self._release(victim)
        if shortfall > 0:
            self._reclaim(shortfall, keys)
        over = self._held() + self._need(keys) - self.max_bytes
        if over > 0:
            log.warning(
                "adapter bank over budget (%d > %d bytes) for one batch",
                over + self.max_bytes,
                self.max_bytes,
            )
        return released

    def _insert(self, version: str, adapter: AdapterFile, pinned: frozenset[str]) -> None:
        if version in self._resident:
            self._resident.move_to_end(version)
            return
        rank = adapter.config.rank
        keys = [(tower, rank) for tower in adapter.config.adapted_towers]
        nbytes = sum(self._slot_bytes(key) for key in keys)
        if nbytes > self.max_bytes:
            raise ValueError(
                f"adapter {version[:12]} needs {nbytes} bytes, more than max_bytes={self.max_bytes}"
            )
        released = self._make_room(keys, pinned)
        for i, key in enumerate(keys):
            pool = self._pool(key)
            if not pool.free:  # grow into the room left once the towers still to come have their slot
                room = self.max_bytes - self._held() - self._need(keys[i + 1 :])
                pool.grow(room // pool.slot_bytes)
            stacked = [t.to(device=self._device, dtype=self._dtype) for t in _stack_tower(adapter, key[0])]
            pool.put(version, stacked)
        self._resident[version] = _Resident(ranks=dict(keys), nbytes=nbytes)
        self._bytes += nbytes
        self._tidy(released)

    def _trim(self) -> None:
        """Back within budget after a forward whose pinned adapters did not fit."""
        self._tidy(self._make_room([], frozenset()))

    def _fetch(self, version: str) -> AdapterFile:
        if self._loader is None:
            raise AdapterNotFound(f"adapter {version} is not resident and this bank has no loader")
        adapter = self._loader(version)
        self._check(adapter)
        self.loads += 1
        return adapter

    # --- encoding --------------------------------------------------------------------------------------

    def encode_text(
        self, texts: Sequence[str], adapters: Sequence[str | None], context_length: int = 32
    ) -> torch.Tensor:
        """Projected, unnormalised text features ``[B, D]``; row i uses adapter ``adapters[i]`` (None: plain)."""
        if len(texts) != len(adapters):
            raise ValueError(f"{len(texts)} texts but {len(adapters)} adapter names")
        tokens = self.clip.tokenize(texts, context_length)
        return self._encode("text", adapters, lambda: self.clip.encode_text(tokens))

    def encode_images(self, images: torch.Tensor, adapters: Sequence[str | None]) -> torch.Tensor:
        """Projected, unnormalised image features ``[B, D]`` for preprocessed images ``[B, 3, H, W]``."""
        if images.shape[0] != len(adapters):
            raise ValueError(f"{images.shape[0]} images but {len(adapters)} adapter names")
        pixels = images.to(device=self._device, dtype=self._dtype)
        return self._encode("vision", adapters, lambda: self.clip.model.encode_image(pixels))

    def _encode(
        self, tower: Tower, adapters: Sequence[str | None], forward: Callable[[], torch.Tensor]
    ) -> torch.Tensor:
        wanted = list(dict.fromkeys(v for v in adapters if v is not None))
        pinned = frozenset(wanted)
        fetched: dict[str, AdapterFile] = {}
        while True:
            with self._lock:
                for version, adapter in fetched.items():
                    self._insert(version, adapter, pinned)
                missing = [v for v in wanted if v not in self._resident]
                if not missing:
                    for version in wanted:
                        self._resident.move_to_end(version)
                    token = _ACTIVE_ROUTE.set(self._route(tower, adapters))
                    try:
                        with torch.no_grad():
                            return forward()
                    finally:
                        _ACTIVE_ROUTE.reset(token)
                        self._trim()
            # Disk reads happen outside the lock; every fetched adapter is inserted on the next pass.
            fetched.update({version: self._fetch(version) for version in missing})

    def _route(self, tower: Tower, adapters: Sequence[str | None]) -> _Route:
        groups: dict[tuple[Tower, int], tuple[list[int], list[int]]] = {}
        for row, version in enumerate(adapters):
            if version is None:
                continue
            rank = self._resident[version].ranks.get(tower)
            if rank is None:  # e.g. a vision-only adapter on the text tower: plain CLIP for this row
                continue
            rows, slots = groups.setdefault((tower, rank), ([], []))
            rows.append(row)
            slots.append(self._pools[(tower, rank)].slot_of[version])
        routes = []
        for key, (rows, slots) in groups.items():
            every_row = len(rows) == len(adapters)
            routes.append(
                _PoolRoute(
                    pool=self._pools[key],
                    slots=torch.tensor(slots, dtype=torch.long, device=self._device),
                    rows=None if every_row else torch.tensor(rows, dtype=torch.long, device=self._device),
                    single_slot=slots[0] if len(set(slots)) == 1 else None,
                )
            )
        return _Route(tower=tower, pools=routes)
