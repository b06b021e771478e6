"""Many adapters on one backbone: mixed batches equal per-adapter runs, LRU by bytes, reload on demand.

Tolerance: mixed batches use gathered ``baddbmm`` and single-adapter runs plain matmuls, so results agree to
float32 rounding, not bit for bit: ``atol=1e-5`` on features of magnitude ~1.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
from adapter_kit import TEXTS, random_adapter_file, random_images

from videoseek.adapter import (
    AdaptedClip,
    AdapterBank,
    AdapterConfig,
    AdapterFile,
    AdapterNotFound,
    backbone_shape,
    store_adapter,
)
from videoseek.clip import LoadedClip, load_clip
from videoseek.model_spec import ModelSpec

ATOL = 1e-5
CONFIGS = [
    AdapterConfig(rank=4, shared_dim=8),
    AdapterConfig(rank=4, shared_dim=16),
    AdapterConfig(rank=2, share=False),  # another rank: another weight pool
    AdapterConfig(rank=4, towers="vision"),  # text rows using it stay plain CLIP
]


def _adapters(clip: LoadedClip) -> list[AdapterFile]:
    shape = backbone_shape(clip.model)
    return [random_adapter_file(clip.identity, shape, config, seed=i) for i, config in enumerate(CONFIGS)]


def _close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=0, atol=ATOL)


def test_mixed_batch_equals_each_adapter_run_alone(tiny_clip: LoadedClip, tiny_spec: ModelSpec) -> None:
    adapters = _adapters(tiny_clip)
    bank = AdapterBank(tiny_clip, max_bytes=1 << 24)
    for adapter in adapters:
        bank.add(adapter.version, adapter)
    rows: list[str | None] = [
        adapters[i].version if i is not None else None for i in (0, 1, None, 2, 0, 3, 1, None)
    ]
    texts = (TEXTS * 2)[: len(rows)]
    images = random_images(len(rows))
    mixed_text, mixed_images = bank.encode_text(texts, rows), bank.encode_images(images, rows)
    assert mixed_text.shape == (len(rows), tiny_clip.embed_dim) and not mixed_text.requires_grad

    for adapter in adapters:
        # The reference is the training path: real adapter modules injected into a private model.
        reference = AdaptedClip(load_clip(tiny_spec), adapter.config, init=adapter)
        picked = [i for i, version in enumerate(rows) if version == adapter.version]
        with torch.no_grad():
            expected_text = reference.encode_text(reference.tokenize([texts[i] for i in picked]))
            expected_images = reference.encode_images(images[picked])
        if adapter.config.towers != "vision":
            _close(mixed_text[picked], expected_text)
        _close(mixed_images[picked], expected_images)
        _close(bank.encode_images(images[picked], [adapter.version] * len(picked)), expected_images)
    # The adapters really differ from one another and from the plain CLIP.
    assert (mixed_images[0] - mixed_images[1]).abs().max() > 1e-2


def test_rows_without_adapter_equal_plain_clip(tiny_clip: LoadedClip, tiny_spec: ModelSpec) -> None:
    adapters = _adapters(tiny_clip)
    bank = AdapterBank(tiny_clip, max_bytes=1 << 24)
    for adapter in adapters:
        bank.add(adapter.version, adapter)
    plain = load_clip(tiny_spec)
    rows = [None, adapters[0].version, None, adapters[3].version]
    images = random_images(4)
    with torch.no_grad():
        plain_text = plain.model.encode_text(plain.tokenize(TEXTS))
        plain_images = plain.model.encode_image(images)
    text, image = bank.encode_text(TEXTS, rows), bank.encode_images(images, rows)
    _close(text[[0, 2, 3]], plain_text[[0, 2, 3]])  # row 3: vision-only adapter on the text tower
    _close(image[[0, 2]], plain_images[[0, 2]])
    assert (image[1] - plain_images[1]).abs().max() > 1e-2
    # Plain encoding through the shared (routed) model, outside any bank call, is untouched.
    with torch.no_grad():
        _close(tiny_clip.model.encode_text(tiny_clip.tokenize(TEXTS)), plain_text)
    _close(bank.encode_text(TEXTS, [None] * 4), plain_text)


def test_lru_evicts_by_bytes_and_reloads_on_demand(tiny_clip: LoadedClip, tmp_path: Path) -> None:
    same_size = [
        random_adapter_file(tiny_clip.identity, backbone_shape(tiny_clip.model), CONFIGS[0], seed=10 + i)
        for i in range(3)
    ]
    root = tmp_path / "adapters"
    versions = [store_adapter(adapter, root) for adapter in same_size]
    probe = AdapterBank.from_directory(tiny_clip, root, max_bytes=1 << 24)
    first_text = probe.encode_text(TEXTS[:1], versions[:1])
    per_adapter = probe.resident_bytes
    assert per_adapter >= same_size[0].nbytes

    bank = AdapterBank.from_directory(tiny_clip, root, max_bytes=int(2.5 * per_adapter))
    for version in versions:
        bank.encode_text(TEXTS[:1], [version])
    assert bank.resident_versions == versions[1:] and bank.resident_bytes == 2 * per_adapter
    assert bank.loads == 3 and bank.evictions == 1

    bank.encode_text(TEXTS[:1], [versions[1]])  # touch: versions[2] becomes least recently used
    again = bank.encode_text(TEXTS[:1], [versions[0]])  # evicted: reloads from disk
    assert bank.loads == 4 and bank.resident_versions == [versions[1], versions[0]]
    _close(again, first_text)


def test_batch_larger_than_the_budget_still_runs(tiny_clip: LoadedClip) -> None:
    adapters = _adapters(tiny_clip)[:2]
    by_version = {a.version: a for a in adapters}
    bank = AdapterBank(
        tiny_clip, max_bytes=max(a.nbytes for a in adapters) * 11 // 10, loader=by_version.__getitem__
    )
    rows = [a.version for a in adapters]
    both = bank.encode_text(TEXTS[:2], rows)
    _close(both[1:], bank.encode_text(TEXTS[1:2], rows[1:]))
    assert len(bank.resident_versions) == 1 and bank.resident_bytes <= bank.max_bytes


def test_unknown_adapter_without_loader_is_an_error(tiny_clip: LoadedClip) -> None:
    bank = AdapterBank(tiny_clip, max_bytes=1 << 20)
    with pytest.raises(AdapterNotFound, match="no loader"):
        bank.encode_text(TEXTS[:1], ["f" * 64])
    with pytest.raises(ValueError, match="2 texts but 1 adapter"):
        bank.encode_text(TEXTS[:2], [None])


def test_concurrent_callers_get_their_own_adapters(tiny_clip: LoadedClip) -> None:
    adapters = _adapters(tiny_clip)[:3]
    bank = AdapterBank(tiny_clip, max_bytes=1 << 24)
    for adapter in adapters:
        bank.add(adapter.version, adapter)
    expected = {a.version: bank.encode_text(TEXTS, [a.version] * len(TEXTS)) for a in adapters}
    results: dict[str, list[torch.Tensor]] = {a.version: [] for a in adapters}
    torch_threads = torch.get_num_threads()

    def work(version: str) -> None:
        for _ in range(5):
            results[version].append(bank.encode_text(TEXTS, [version] * len(TEXTS)))

    threads = [threading.Thread(target=work, args=(a.version,)) for a in adapters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert torch.get_num_threads() == torch_threads
    for version, outputs in results.items():
        assert len(outputs) == 5
        for output in outputs:
            _close(output, expected[version])


def _reference_images(tiny_spec: ModelSpec, adapter: AdapterFile, images: torch.Tensor) -> torch.Tensor:
    """The adapter run alone through the training path (real modules in a private model)."""
    reference = AdaptedClip(load_clip(tiny_spec), adapter.config, init=adapter)
    with torch.no_grad():
        return reference.encode_images(images)


def test_pools_hold_at_most_max_bytes_under_rank_churn_and_compaction_keeps_outputs(
    tiny_clip: LoadedClip, tiny_spec: ModelSpec
) -> None:
    # Rounds of adapters of ranks 2..6 through a bank that fits ~3.5 rank-4 adapters. Each call is a mixed
    # batch of the newest adapter and the previous one (at rank boundaries two pools), and every call must
    # leave the pools' allocated bytes (free slots included) within max_bytes: no slack is needed (only while
    # a pool is copied do its old and new tensors coexist, which this cannot observe).
    shape, ranks = backbone_shape(tiny_clip.model), (2, 3, 4, 5, 6)
    adapters = [
        random_adapter_file(
            tiny_clip.identity, shape, AdapterConfig(rank=rank, shared_dim=8), seed=10 * rank + i
        )
        for rank in ranks
        for i in range(4)
    ]
    by_version = {a.version: a for a in adapters}
    probe = AdapterBank(tiny_clip, max_bytes=1 << 24)
    probe.add(adapters[8].version, adapters[8])  # rank 4
    bank = AdapterBank(tiny_clip, max_bytes=int(3.5 * probe.resident_bytes), loader=by_version.__getitem__)
    images = random_images(3)
    expected = {a.version: _reference_images(tiny_spec, a, images) for a in adapters}

    previous = adapters[-1]
    for _round in range(3):
        for adapter in adapters:
            bank.add(adapter.version, adapter)  # no forward after it to tidy up: the insert itself must fit
            assert bank.held_bytes <= bank.max_bytes, (bank.held_bytes, bank.max_bytes, bank.pools)
            rows = [adapter.version, previous.version, None]
            out = bank.encode_images(images, rows)
            _close(out[0], expected[adapter.version][0])
            _close(out[1], expected[previous.version][1])
            assert bank.held_bytes <= bank.max_bytes, (bank.held_bytes, bank.max_bytes, bank.pools)
            previous = adapter
        # Pools of ranks no longer resident are gone, not kept empty.
        resident_ranks = {by_version[v].config.rank for v in bank.resident_versions}
        assert {name.split("/r")[1] for name in bank.pools} == {str(r) for r in resident_ranks}
    assert bank.compactions > 0 and bank.evictions > 0

    # After all that renumbering, a batch over every resident adapter still equals each adapter run alone.
    resident = bank.resident_versions
    rows = [resident[i % len(resident)] for i in range(3)]
    mixed = bank.encode_images(images, rows)
    for i, version in enumerate(rows):
        _close(mixed[i], expected[version][i])


def test_evicting_adapters_compacts_half_empty_pools_and_drops_empty_ones(tiny_clip: LoadedClip) -> None:
    shape = backbone_shape(tiny_clip.model)
    adapters = [random_adapter_file(tiny_clip.identity, shape, CONFIGS[0], seed=40 + i) for i in range(8)]
    bank = AdapterBank(tiny_clip, max_bytes=1 << 24)
    for adapter in adapters:
        bank.add(adapter.version, adapter)
    images = random_images(2)
    before = {a.version: bank.encode_images(images, [a.version] * 2) for a in adapters}
    capacity = bank.pools["vision/r4"]["capacity"]
    assert capacity >= 8

    kept = adapters[3::4]  # slots 3 and 7: both move when the pool is compacted
    for adapter in adapters:
        if adapter not in kept:
            bank.evict(adapter.version)
    # Compacted once more than half its slots were free (at 3 of 8 used), then left alone (2 of 3 used).
    assert bank.pools["vision/r4"] == {"capacity": 3, "used": 2} and bank.compactions == 2  # both towers
    assert bank.held_bytes < 2 * bank.resident_bytes
    for adapter in kept:
        _close(bank.encode_images(images, [adapter.version] * 2), before[adapter.version])
    mixed = bank.encode_images(images, [kept[0].version, kept[1].version])
    _close(mixed[0], before[kept[0].version][0])
    _close(mixed[1], before[kept[1].version][1])

    for adapter in kept:
        bank.evict(adapter.version)
    assert bank.pools == {} and bank.held_bytes == 0
