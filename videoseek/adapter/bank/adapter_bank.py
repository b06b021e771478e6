"""The adapter bank: any number of adapters on one frozen CLIP, each batch row on its own adapter.

This class ties the parts together: :mod:`residency` keeps the resident adapters in their pools within the
budget, :mod:`loading` supplies the ones that are not resident, and :mod:`routing` applies each row's adapter
during one forward.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from videoseek.adapter.bank.loading import AdapterLoader, AdapterNotFound, directory_loader
from videoseek.adapter.bank.pools import stack_tower
from videoseek.adapter.bank.residency import Residency
from videoseek.adapter.bank.routing import Route, install_routing
from videoseek.adapter.config import BackboneShape, Tower
from videoseek.adapter.files import AdapterFile, AdapterFileError
from videoseek.adapter.model import backbone_shape
from videoseek.clip import LoadedClip


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
    thread-safe; forwards run one at a time (other banks and plain forwards on the same model may run at the
    same time in other threads: each sees only its own route, see :mod:`videoseek.adapter.bank.routing`).
    """

    def __init__(self, clip: LoadedClip, max_bytes: int, loader: AdapterLoader | None = None) -> None:
        self.clip = clip
        self._loader = loader
        self._lock = threading.RLock()
        self._shape: BackboneShape = backbone_shape(clip.model)
        reference = next(clip.model.parameters())
        self._device, self._dtype = reference.device, reference.dtype
        self._residency = Residency(self._shape, max_bytes, self._device, self._dtype)  # checks max_bytes
        self.loads = 0
        self._router = install_routing(clip.model)

    @classmethod
    def from_directory(cls, clip: LoadedClip, root: Path, max_bytes: int) -> AdapterBank:
        """A bank that reloads adapters from ``root/<version>`` (the layout ``store_adapter`` writes)."""
        return cls(clip, max_bytes, directory_loader(root, clip.identity))

    # --- residency -------------------------------------------------------------------------------------

    def __contains__(self, version: object) -> bool:
        with self._lock:
            return version in self._residency

    @property
    def resident_versions(self) -> list[str]:
        """Resident adapters, least recently used first."""
        with self._lock:
            return list(self._residency.resident)

    @property
    def max_bytes(self) -> int:
        """The budget: the most bytes the pools hold (see the class docstring for when they briefly hold more)."""
        return self._residency.max_bytes

    @property
    def resident_bytes(self) -> int:
        """Bytes of the resident adapters' slots (what they use, not what the pools hold)."""
        with self._lock:
            return self._residency.resident_bytes

    @property
    def held_bytes(self) -> int:
        """Bytes the pools' tensors really occupy (free slots included): what ``max_bytes`` bounds."""
        with self._lock:
            pools = self._residency.pools.values()
            return sum(t.untyped_storage().nbytes() for pool in pools for t in pool.tensors())

    @property
    def pools(self) -> dict[str, dict[str, int]]:
        """Per ``<tower>/r<rank>`` pool: ``capacity`` (slots allocated) and ``used`` (adapters resident)."""
        with self._lock:
            return {
                f"{tower}/r{rank}": {"capacity": pool.capacity, "used": pool.used}
                for (tower, rank), pool in sorted(self._residency.pools.items())
            }

    @property
    def evictions(self) -> int:
        """Adapters dropped from memory so far (by the LRU or by :meth:`evict`)."""
        return self._residency.evictions

    @property
    def compactions(self) -> int:
        """Pools copied into fewer slots so far."""
        return self._residency.compactions

    def add(self, version: str, adapter: AdapterFile) -> None:
        """Make ``adapter`` resident under ``version`` (evicting least recently used ones as needed)."""
        self._check(adapter)
        with self._lock:
            self._insert(version, adapter, pinned=frozenset())

    def evict(self, version: str) -> bool:
        """Drop ``version`` from memory (it reloads on demand); False if it was not resident."""
        with self._lock:
            return self._residency.evict(version)

    def _check(self, adapter: AdapterFile) -> None:
        adapter.check_base(self.clip.identity)
        if adapter.shape != self._shape:
            raise AdapterFileError(f"adapter shape {adapter.shape} does not fit this CLIP ({self._shape})")

    def _insert(self, version: str, adapter: AdapterFile, pinned: frozenset[str]) -> None:
        def weights(tower: Tower) -> list[torch.Tensor]:
            return [t.to(device=self._device, dtype=self._dtype) for t in stack_tower(adapter, tower)]

        config = adapter.config
        self._residency.insert(version, config.rank, config.adapted_towers, weights, pinned)

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
                missing = [v for v in wanted if v not in self._residency]
                if not missing:
                    self._residency.touch(wanted)
                    try:
                        with self._router.routing(self._route(tower, adapters)), torch.no_grad():
                            return forward()
                    finally:
                        self._residency.trim()
            # Disk reads happen outside the lock; every fetched adapter is inserted on the next pass.
            fetched.update({version: self._fetch(version) for version in missing})

    def _route(self, tower: Tower, adapters: Sequence[str | None]) -> Route:
        """Each row's pool slot on ``tower`` (slots are looked up now: a bank operation may renumber them)."""
        placements = [None if v is None else self._residency.placement(v, tower) for v in adapters]
        return Route.build(tower, placements, self._device)
