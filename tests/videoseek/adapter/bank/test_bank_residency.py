"""The bank's LRU bookkeeping on its own: the pools stay within budget and every resident keeps its weights.

No CLIP here: a small backbone shape and random tensors in the pool layout stand in for adapter files.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence

import pytest
import torch

from videoseek.adapter import BackboneShape, TowerShape
from videoseek.adapter.bank.pools import slot_bytes
from videoseek.adapter.bank.residency import Residency, TowerWeights
from videoseek.adapter.config import Tower

SHAPE = BackboneShape(vision=TowerShape(width=8, layers=2), text=TowerShape(width=6, layers=1))
BOTH: tuple[Tower, ...] = ("vision", "text")


def _residency(max_bytes: int) -> Residency:
    return Residency(SHAPE, max_bytes, torch.device("cpu"), torch.float32)


def _slot(tower: Tower, rank: int) -> int:
    shape = SHAPE.tower(tower)
    return slot_bytes(2 * shape.layers, shape.width, rank, torch.float32)


def _weights(seed: int, rank: int) -> TowerWeights:
    """An adapter's tensors for each tower, pool layout, distinct per ``seed``."""

    def weights(tower: Tower) -> list[torch.Tensor]:
        shape = SHAPE.tower(tower)
        s, d = 2 * shape.layers, shape.width
        generator = torch.Generator().manual_seed(1000 * seed + (tower == "text"))
        return [
            torch.randn(dims, generator=generator) for dims in ((s, rank, d), (s, rank), (s, d, rank), (s, d))
        ]

    return weights


def _insert(
    residency: Residency,
    version: str,
    rank: int,
    towers: Sequence[Tower] = BOTH,
    pinned: frozenset[str] = frozenset(),
) -> None:
    residency.insert(version, rank, towers, _weights(int(version[1:]), rank), pinned)


def _assert_consistent(
    residency: Residency, ranks: dict[str, int], towers: dict[str, Sequence[Tower]]
) -> None:
    """Each resident's slots hold its own weights, the byte counts add up, and no pool is kept empty."""
    for version in residency.resident:
        assert all(residency.placement(version, t) is None for t in BOTH if t not in towers[version])
        for tower in towers[version]:
            placement = residency.placement(version, tower)
            assert placement is not None
            pool, slot = placement
            expected = _weights(int(version[1:]), ranks[version])(tower)
            for actual, value in zip(pool.tensors(), expected, strict=True):
                assert torch.equal(actual[:, slot], value), (version, tower)
    measured = sum(t.untyped_storage().nbytes() for pool in residency.pools.values() for t in pool.tensors())
    assert residency.held_bytes() == measured
    assert residency.resident_bytes == sum(
        _slot(tower, ranks[v]) for v in residency.resident for tower in towers[v]
    )
    assert set(residency.pools) == {(tower, ranks[v]) for v in residency.resident for tower in towers[v]}


def test_pools_hold_at_most_max_bytes_after_every_insert_and_each_resident_keeps_its_weights() -> None:
    chooser = random.Random(7)
    tower_sets: list[tuple[Tower, ...]] = [BOTH, ("vision",), ("text",)]
    ranks = {f"v{i}": chooser.randint(1, 4) for i in range(30)}
    towers = {version: chooser.choice(tower_sets) for version in ranks}
    residency = _residency(max_bytes=5 * (_slot("vision", 2) + _slot("text", 2)))
    for _step in range(400):
        version = chooser.choice(list(ranks))
        if chooser.random() < 0.15:
            residency.evict(version)
        else:
            _insert(residency, version, ranks[version], towers[version])
            assert list(residency.resident)[-1] == version  # inserted or touched: most recently used
        assert residency.held_bytes() <= residency.max_bytes, residency.pools
        _assert_consistent(residency, ranks, towers)
    assert residency.evictions > 0 and residency.compactions > 0
    assert len({ranks[v] for v in residency.resident}) > 1  # several pools live at once, not one by one


def test_the_least_recently_used_adapter_is_evicted_first_and_touching_refreshes_it() -> None:
    one = _slot("vision", 2)
    residency = _residency(max_bytes=3 * one)
    for version in ("v1", "v2", "v3"):
        _insert(residency, version, 2, ("vision",))
    residency.touch(["v1"])
    _insert(residency, "v4", 2, ("vision",))
    assert list(residency.resident) == ["v3", "v1", "v4"] and residency.evictions == 1
    _insert(residency, "v3", 2, ("vision",))  # resident already: only refreshed
    assert list(residency.resident) == ["v1", "v4", "v3"] and residency.evictions == 1
    assert residency.held_bytes() == 3 * one


def test_free_slots_are_given_back_before_any_adapter_is_evicted() -> None:
    two, three = _slot("vision", 2), _slot("vision", 3)
    residency = _residency(max_bytes=4 * two + three - 1)
    _insert(residency, "v1", 2, ("vision",))
    assert residency.pools[("vision", 2)].capacity == 4  # grown by 4 slots: 3 of them free
    _insert(residency, "v2", 3, ("vision",))  # fits once the free rank-2 slots are given back
    assert residency.evictions == 0 and list(residency.resident) == ["v1", "v2"]
    assert residency.pools[("vision", 2)].capacity == 1 and residency.compactions == 1
    assert residency.held_bytes() <= residency.max_bytes


def test_pinned_adapters_stay_over_budget_for_one_forward_and_trim_goes_back_within_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    one = _slot("vision", 2)
    residency = _residency(max_bytes=2 * one)
    pinned = frozenset({"v1", "v2", "v3"})
    with caplog.at_level(logging.WARNING, logger="videoseek.adapter.bank"):
        for version in sorted(pinned):
            _insert(residency, version, 2, ("vision",), pinned)
    assert list(residency.resident) == ["v1", "v2", "v3"] and residency.held_bytes() == 3 * one
    assert "over budget" in caplog.text

    residency.trim()
    assert list(residency.resident) == ["v2", "v3"] and residency.held_bytes() == 2 * one


def test_an_adapter_bigger_than_the_whole_budget_is_refused_with_its_size() -> None:
    residency = _residency(max_bytes=_slot("vision", 4))
    with pytest.raises(
        ValueError, match=f"needs {_slot('vision', 4) + _slot('text', 4)} bytes, more than max_bytes"
    ):
        _insert(residency, "v1", 4)
    assert not residency.resident and not residency.pools


def test_a_budget_of_no_bytes_is_refused() -> None:
    with pytest.raises(ValueError, match="max_bytes must be > 0"):
        _residency(max_bytes=0)
