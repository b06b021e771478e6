"""Many adapters served by one frozen CLIP: one forward pass over rows that each name their own adapter.

Resident adapters live stacked: for each (tower, rank) there is one tensor per kind of weight, shaped
``[sites, slots, ...]``, and an adapter is one slot of each. A forward gathers each row's slot
(``index_select``) and applies all rows' adapters with two batched matmuls per site (``baddbmm``); a batch on a
single adapter uses plain matmuls on views of its slot. Rows naming no adapter get an exact zero delta, so they
equal the plain CLIP. Residency is an LRU bounded by bytes; evicted adapters reload through the loader.

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

from videoseek.core.adapter.config import (
    SITES,
    TOWERS,
    BackboneShape,
    Site,
    Tower,
    shared_prefix,
    site_prefix,
)
from videoseek.core.adapter.files import AdapterFile, AdapterFileError, load_adapter
from videoseek.core.adapter.layer import adapter_delta, batched_adapter_delta
from videoseek.core.adapter.model import AdapterSite, AlreadyAdapted, backbone_shape, wrap_sites
from videoseek.core.clip import LoadedClip

log = logging.getLogger(__name__)

AdapterLoader = Callable[[str], AdapterFile]
_VERSION_RE = re.compile(r"[0-9a-f]{64}")


class AdapterNotFound(LookupError):
    """An adapter version is neither resident nor loadable."""


def _site_index(layer: int, site: Site) -> int:
    return 2 * layer + SITES.index(site)


class _TowerPool:
    """Stacked weights of the resident adapters of one rank for one tower; slot ``c`` is one adapter.

    nn.Linear layout (``[out, in]``, the faster one for these thin matmuls): ``down [S, C, r, d]``,
    ``down_b [S, C, r]``, ``up [S, C, d, r]``, ``up_b [S, C, d]`` with S = 2 * layers sites. The up-projection is stored whole (unique and shared slices
    concatenated), so the forward does not care whether an adapter shares.
    """

    def __init__(self, sites: int, width: int, rank: int, device: torch.device, dtype: torch.dtype) -> None:
        self.sites, self.width, self.rank = sites, width, rank
        self.device, self.dtype = device, dtype
        self.capacity = 0
        self.free: list[int] = []
        self.down = torch.empty(sites, 0, rank, width, device=device, dtype=dtype)
        self.down_b = torch.empty(sites, 0, rank, device=device, dtype=dtype)
        self.up = torch.empty(sites, 0, width, rank, device=device, dtype=dtype)
        self.up_b = torch.empty(sites, 0, width, device=device, dtype=dtype)

    @property
    def slot_bytes(self) -> int:
        return self.sites * (2 * self.width * self.rank + self.rank + self.width) * self.down.element_size()

    def _grow(self) -> None:
        # Modest growth keeps the untouched tail small; pages of the tail are not resident until written.
        new = max(self.capacity + 4, math.ceil(self.capacity * 1.25))
        for name in ("down", "down_b", "up", "up_b"):
            old = getattr(self, name)
            grown = torch.empty((self.sites, new, *old.shape[2:]), device=self.device, dtype=self.dtype)
            grown[:, : self.capacity].copy_(old)
            setattr(self, name, grown)
        self.free.extend(range(new - 1, self.capacity - 1, -1))
        self.capacity = new

    def put(self, down: torch.Tensor, down_b: torch.Tensor, up: torch.Tensor, up_b: torch.Tensor) -> int:
        if not self.free:
            self._grow()
        slot = self.free.pop()
        for target, value in ((self.down, down), (self.down_b, down_b), (self.up, up), (self.up_b, up_b)):
            target[:, slot].copy_(value)
        return slot

    def release(self, slot: int) -> None:
        self.free.append(slot)


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
    slots: dict[Tower, tuple[int, int]]  # tower -> (rank, slot)
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
    """Any number of adapters on one frozen CLIP, LRU-bounded by ``max_bytes`` of resident adapter weights.

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
        self._pools: dict[tuple[Tower, int], _TowerPool] = {}
        self._resident: OrderedDict[str, _Resident] = OrderedDict()
        self._bytes = 0
        self.loads = 0
        self.evictions = 0
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
        with self._lock:
            return self._bytes

    def add(self, version: str, adapter: AdapterFile) -> None:
        """Make ``adapter`` resident under ``version`` (evicting least recently used ones as needed)."""
        self._check(adapter)
        with self._lock:
            self._insert(version, adapter, pinned=frozenset())

    def evict(self, version: str) -> bool:
        """Drop ``version`` from memory (it reloads on demand); False if it was not resident."""
        with self._lock:
            resident = self._resident.pop(version, None)
            if resident is None:
                return False
            for tower, (rank, slot) in resident.slots.items():
                self._pools[(tower, rank)].release(slot)
            self._bytes -= resident.nbytes
            self.evictions += 1
            return True

    def _check(self, adapter: AdapterFile) -> None:
        adapter.check_base(self.clip.identity)
        if adapter.shape != self._shape:
            raise AdapterFileError(f"adapter shape {adapter.shape} does not fit this CLIP ({self._shape})")

    def _pool(self, tower: Tower, rank: int) -> _TowerPool:
        key = (tower, rank)
        if key not in self._pools:
            shape = self._shape.tower(tower)
            self._pools[key] = _TowerPool(2 * shape.layers, shape.width, rank, self._device, self._dtype)
        return self._pools[key]

    def _insert(self, version: str, adapter: AdapterFile, pinned: frozenset[str]) -> None:
        if version in self._resident:
            self._resident.move_to_end(version)
            return
        towers = adapter.config.adapted_towers
        nbytes = sum(self._pool(t, adapter.config.rank).slot_bytes for t in towers)
        if nbytes > self.max_bytes:
            raise ValueError(
                f"adapter {version[:12]} needs {nbytes} bytes, more than max_bytes={self.max_bytes}"
            )
        self._trim(reserve=nbytes, pinned=pinned)
        slots: dict[Tower, tuple[int, int]] = {}
        for tower in towers:
            pool = self._pool(tower, adapter.config.rank)
            stacked = (t.to(device=self._device, dtype=self._dtype) for t in _stack_tower(adapter, tower))
            slots[tower] = (adapter.config.rank, pool.put(*stacked))
        self._resident[version] = _Resident(slots=slots, nbytes=nbytes)
        self._bytes += nbytes

    def _trim(self, reserve: int = 0, pinned: frozenset[str] = frozenset()) -> None:
        for version in list(self._resident):
            if self._bytes + reserve <= self.max_bytes:
                return
            if version not in pinned:
                self.evict(version)
        if self._bytes + reserve > self.max_bytes:
            log.warning(
                "adapter bank over budget (%d > %d bytes) for one batch",
                self._bytes + reserve,
                self.max_bytes,
            )

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
            placed = self._resident[version].slots.get(tower)
            if placed is None:  # e.g. a vision-only adapter on the text tower: plain CLIP for this row
                continue
            rank, slot = placed
            rows, slots = groups.setdefault((tower, rank), ([], []))
            rows.append(row)
            slots.append(slot)
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
