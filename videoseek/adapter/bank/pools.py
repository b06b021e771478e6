"""The stacked weights of the resident adapters of one (tower, rank): one slot per adapter.

Only tensors and slot numbers live here: which adapters are resident and how many slots the budget allows is
:mod:`residency`'s job, and which batch rows read which slots is :mod:`routing`'s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from videoseek.adapter.config import SITES, Site, Tower, shared_prefix, site_prefix
from videoseek.adapter.files import AdapterFile

PoolKey = tuple[Tower, int]  # (tower, rank): adapters of one rank share one pool per tower


def site_index(layer: int, site: Site) -> int:
    """The position of a (layer, site) along a pool's first dimension."""
    return 2 * layer + SITES.index(site)


def slot_bytes(sites: int, width: int, rank: int, dtype: torch.dtype) -> int:
    """Bytes of one slot of a pool: what one adapter costs in one tower."""
    return sites * (2 * width * rank + rank + width) * dtype.itemsize


def stack_tower(adapter: AdapterFile, tower: Tower) -> tuple[torch.Tensor, ...]:
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


class TowerPool:
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
        return slot_bytes(self.sites, self.width, self.rank, self.dtype)

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
        """Copy one adapter's tensors (pool layout, one slot's worth) into the lowest free slot."""
        if not self.free:
            raise RuntimeError("no free slot: the bank grows the pool first")
        slot = self.free.pop()
        for target, value in zip(self.tensors(), tensors, strict=True):
            target[:, slot].copy_(value)
        self.slot_of[version] = slot

    def release(self, version: str) -> None:
        """Free ``version``'s slot (its bytes stay allocated until a compaction)."""
        self.free.append(self.slot_of.pop(version))

    @property
    def sparse(self) -> bool:
        """More than half the slots free: worth a compaction after releases."""
        return 2 * len(self.free) > self.capacity
