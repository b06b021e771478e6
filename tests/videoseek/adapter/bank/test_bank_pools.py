"""A pool's slots keep each adapter's weights through growth and compaction; its layout matches the file's."""

from __future__ import annotations

import pytest
import torch
from adapter_kit import random_adapter_file

from videoseek.adapter import AdapterConfig, backbone_shape
from videoseek.adapter.bank.pools import TowerPool, site_index, slot_bytes, stack_tower
from videoseek.adapter.config import SITES, shared_prefix, site_prefix
from videoseek.clip import LoadedClip

SITES_N, WIDTH, RANK = 4, 6, 3


def _pool() -> TowerPool:
    return TowerPool(SITES_N, WIDTH, RANK, torch.device("cpu"), torch.float32)


def _weights(seed: int) -> list[torch.Tensor]:
    """One slot's worth of distinct values, pool layout."""
    generator = torch.Generator().manual_seed(seed)
    dims = ((SITES_N, RANK, WIDTH), (SITES_N, RANK), (SITES_N, WIDTH, RANK), (SITES_N, WIDTH))
    return [torch.randn(d, generator=generator) for d in dims]


def _slot(pool: TowerPool, version: str) -> list[torch.Tensor]:
    return [t[:, pool.slot_of[version]] for t in pool.tensors()]


def _assert_holds(pool: TowerPool, weights: dict[str, list[torch.Tensor]]) -> None:
    assert set(pool.slot_of) == set(weights)
    for version, expected in weights.items():
        for actual, value in zip(_slot(pool, version), expected, strict=True):
            assert torch.equal(actual, value), version


def test_growing_adds_a_quarter_at_least_four_within_the_room_given_and_keeps_every_slot() -> None:
    pool = _pool()
    pool.grow(most=100)
    assert pool.capacity == 4 and pool.free == [3, 2, 1, 0]  # the lowest free slot is taken first
    weights = {f"v{i}": _weights(i) for i in range(4)}
    for version, tensors in weights.items():
        pool.put(version, tensors)
    assert pool.slot_of == {"v0": 0, "v1": 1, "v2": 2, "v3": 3} and not pool.free
    with pytest.raises(RuntimeError, match="grows the pool first"):
        pool.put("v4", _weights(4))

    pool.grow(most=2)  # 1.25x would be 4 more (at least 4): the budget's room caps it
    assert pool.capacity == 6 and pool.free == [5, 4]
    _assert_holds(pool, weights)
    pool.grow(most=0)  # no room at all still gives the one slot an insert needs
    assert pool.capacity == 7
    _assert_holds(pool, weights)


def test_compacting_keeps_each_resident_adapters_weights_in_slots_zero_up() -> None:
    pool = _pool()
    weights = {f"v{i}": _weights(i) for i in range(8)}
    for version, tensors in weights.items():
        if not pool.free:
            pool.grow(most=8)
        pool.put(version, tensors)
    assert pool.capacity == 8 and pool.slot_of["v3"] == 3 and pool.slot_of["v7"] == 7
    for version in ("v0", "v1", "v2", "v4", "v5", "v6"):
        pool.release(version)
        del weights[version]
    assert pool.sparse and pool.used == 2

    pool.compact(spare=1)
    assert pool.capacity == 3 and pool.slot_of == {"v3": 0, "v7": 1} and pool.free == [2]
    assert not pool.sparse
    _assert_holds(pool, weights)
    pool.put("v8", _weights(8))
    weights["v8"] = _weights(8)
    _assert_holds(pool, weights)


def test_held_bytes_are_the_bytes_the_tensors_occupy() -> None:
    pool = _pool()
    assert pool.held_bytes == 0
    pool.grow(most=5)
    measured = sum(t.untyped_storage().nbytes() for t in pool.tensors())
    assert pool.held_bytes == measured == 4 * slot_bytes(SITES_N, WIDTH, RANK, torch.float32)


def test_a_stacked_tower_puts_layer_and_site_at_site_index_with_the_shared_slice_last(
    tiny_clip: LoadedClip,
) -> None:
    shape = backbone_shape(tiny_clip.model)
    adapter = random_adapter_file(tiny_clip.identity, shape, AdapterConfig(rank=4, shared_dim=8), seed=3)
    down, down_b, up, up_b = stack_tower(adapter, "text")
    width, layers = shape.text.width, shape.text.layers
    assert down.shape == (2 * layers, 4, width) and up.shape == (2 * layers, width, 4)
    assert down_b.shape == (2 * layers, 4) and up_b.shape == (2 * layers, width)
    t = adapter.tensors
    for layer in range(layers):
        for site in SITES:
            i, prefix, shared = (
                site_index(layer, site),
                site_prefix("text", layer, site),
                shared_prefix(layer, site),
            )
            assert torch.equal(down[i], t[f"{prefix}.down.weight"])
            assert torch.equal(down_b[i], t[f"{prefix}.down.bias"])
            assert torch.equal(up[i, : width - 8], t[f"{prefix}.up.weight"])
            assert torch.equal(up[i, width - 8 :], t[f"{shared}.weight"])
            assert torch.equal(up_b[i, width - 8 :], t[f"{shared}.bias"])
