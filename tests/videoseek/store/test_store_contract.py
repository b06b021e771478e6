"""One contract, both clip stores: Qdrant Edge (embedded) and qdrant-client (server API, local mode)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from store_testdata import DIM, clip, unit

from videoseek.layout import InvalidName
from videoseek.metadata import INT64_MAX, INT64_MIN, MAX_METADATA_DEPTH, MAX_METADATA_STRING_CHARS
from videoseek.store import (
    ClipPoint,
    ClipStore,
    CollectionExists,
    CollectionNotFound,
    InvalidPoint,
    SearchFilter,
    StoreError,
    point_id,
)
from videoseek.store.base import POOLED_INT8_QUANTILE
from videoseek.store.edge import EdgeClipStore
from videoseek.store.edge_layout import legacy_edge_config, shard_layout
from videoseek.store.server import ServerClipStore

Opener = Callable[[], ClipStore]

FLOAT16_RTOL = 2.0**-10  # twice float16's rounding error (11 significant bits)
FLOAT16_ATOL = 1e-6


def _opener(kind: str, root: Path) -> Opener:
    if kind == "edge":
        return lambda: EdgeClipStore(root / "edge")
    return lambda: ServerClipStore.local(root / "local")


@pytest.fixture(params=["edge", "server"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    opened: list[ClipStore] = []
    base = _opener(request.param, tmp_path)

    def opener() -> ClipStore:
        store = base()
        opened.append(store)
        return store

    yield opener
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: Opener) -> ClipStore:
    return open_store()


def test_create_get_list_delete_collections(store: ClipStore) -> None:
    info = store.create_collection("clips", DIM, model="ViT-B-32:openai", adapter_version="a1")
    assert (info.name, info.dim, info.model, info.adapter_version, info.points) == (
        "clips",
        DIM,
        "ViT-B-32:openai",
        "a1",
        0,
    )
    assert info.physical == "vs__clips__1"
    store.create_collection("other", 4, model="toy")
    store.upsert("clips", [clip("v1", 0), clip("v1", 1), clip("v2", 0)])

    got = store.get_collection("clips")
    assert (got.points, got.videos, got.created_at) == (3, 2, info.created_at)
    assert [c.name for c in store.list_collections()] == ["clips", "other"]

    store.delete_collection("other")
    assert [c.name for c in store.list_collections()] == ["clips"]
    with pytest.raises(CollectionNotFound):
        store.get_collection("other")


def test_duplicate_create_is_refused_and_keeps_data(store: ClipStore) -> None:
    store.create_collection("clips", DIM, model="m")
    store.upsert("clips", [clip("v1", 0)])
    with pytest.raises(CollectionExists):
        store.create_collection("clips", DIM, model="m")
    assert store.count("clips") == 1


def test_invalid_names_are_refused(store: ClipStore) -> None:
    for bad in ("Clips", "", "a/b", "vs__x__1"):
        with pytest.raises(InvalidName):
            store.create_collection(bad, DIM, model="m")


def test_unknown_collection_raises_not_found(store: ClipStore) -> None:
    calls: list[Callable[[], object]] = [
        lambda: store.get_collection("nope"),
        lambda: store.delete_collection("nope"),
        lambda: store.upsert("nope", [clip("v1", 0)]),
        lambda: store.search("nope", unit(1), 5),
        lambda: store.get_frames("nope", [point_id("v1", 0)]),
        lambda: store.count("nope"),
        lambda: store.delete_video("nope", "v1"),
        lambda: store.list_videos("nope"),
        lambda: store.new_version("nope", "a2"),
    ]
    for call in calls:
        with pytest.raises(CollectionNotFound):
            call()


def test_upsert_is_idempotent(store: ClipStore) -> None:
    store.create_collection("clips", DIM, model="m")
    points = [clip("v1", i) for i in range(4)]
    store.upsert("clips", points)
    store.upsert("clips", points)
    assert store.count("clips") == 4
    moved = clip("v1", 2, seed=999)  # redelivered write with new content overwrites in place
    store.upsert("clips", [moved])
    assert store.count("clips") == 4
    assert store.search("clips", moved.pooled, 1)[0].id == point_id("v1", 2)


def test_search_returns_nearest_pooled_first_with_payload(store: ClipStore) -> None:
    store.create_collection("clips", DIM, model="m")
    points = [clip(f"v{i % 3}", i, seed=i, metadata={"cam": f"c{i}"}) for i in range(12)]
    store.upsert("clips", points)
    target = points[7]
    query = target.pooled + 0.05 * unit(12345)
    hits = store.search("clips", query, limit=5)
    assert len(hits) == 5
    top = hits[0]
    assert top.id == target.id == point_id(target.video_id, 7)
    assert (top.video_id, top.clip_index, top.start_s, top.end_s) == (target.video_id, 7, 35.0, 45.0)
    assert top.frame_times == target.frame_times
    assert top.payload == target.payload
    assert top.frames is None
    assert top.score == pytest.approx(float(np.dot(query, target.pooled) / np.linalg.norm(query)), abs=1e-4)
    assert all(a.score >= b.score for a, b in itertools.pairwise(hits))


def test_filter_by_video_ids(store: ClipStore) -> None:
    store.create_collection("clips", DIM, model="m")
    store.upsert("clips", [clip(f"v{i % 4}", i, seed=i) for i in range(16)])
    hits = store.search("clips", unit(3), 16, SearchFilter(video_ids=["v1", "v3"]))
    assert len(hits) == 8 and {h.video_id for h in hits} == {"v1", "v3"}
    assert store.search("clips", unit(3), 16, SearchFilter(video_ids=[])) == []


def test_excluded_videos_never_match_even_with_other_filters(store: ClipStore) -> None:
    store.create_collection("clips", DIM, model="m")
    store.upsert("clips", [clip(f"v{i % 4}", i, seed=i) for i in range(16)])
    hits = store.search("clips", unit(3), 16, SearchFilter(exclude_video_ids=("v0", "v2")))
    assert len(hits) == 8 and {h.video_id for h in hits} == {"v1", "v3"}
    both = SearchFilter(video_ids=["v1", "v2"], exclude_video_ids=("v2",))
    assert {h.video_id for h in store.search("clips", unit(3), 16, both)} == {"v1"}


def test_filter_by_metadata_equality(store: ClipStore) -> None:
    store.create_collection("clips", DIM, model="m")
    metas: list[dict[str, object]] = [
        {"cam": "front", "n": 1, "speed": 1.5, "night": True, "odd key.x": "a"},
        {"cam": "back", "n": 2, "speed": 2.0, "night": False},
        {"cam": "front", "n": 2, "speed": 1.5, "night": False, "odd key.x": "b"},
    ]
    store.upsert("clips", [clip("v1", i, seed=i, metadata=m) for i, m in enumerate(metas)])

    def matching(**metadata: object) -> set[int]:
        hits = store.search("clips", unit(0), 10, SearchFilter(metadata=metadata))  # type: ignore[arg-type]
        return {h.clip_index for h in hits}

    assert matching(cam="front") == {0, 2}
    assert matching(n=2) == {1, 2}
    assert matching(speed=2) == {1}  # numbers compare by value: 2 == 2.0
    assert matching(night=True) == {0}
    assert matching(night=False) == {1, 2}
    assert matching(cam="front", n=2) == {2}
    assert matching(**{"odd key.x": "b"}) == {2}
    assert matching(cam="side") == set()
    with pytest.raises(ValueError, match="metadata filter"):
        SearchFilter(metadata={"cam": ["front"]})  # type: ignore[dict-item]


def test_filter_by_time_range_keeps_overlapping_clips(store: ClipStore) -> None:
    store.create_collection("clips", DIM, model="m")
    store.upsert("clips", [clip("v1", i, seed=i) for i in range(6)])  # clip i spans [5i, 5i+10]

    def within(lo: float | None, hi: float | None) -> set[int]:
        return {h.clip_index for h in store.search("clips", unit(0), 10, SearchFilter(time_range=(lo, hi)))}

    assert within(12.0, 14.0) == {1, 2}
    assert within(None, 4.0) == {0}
    assert within(24.0, None) == {3, 4, 5}
    assert within(100.0, None) == set()
    flt = SearchFilter(video_ids=["v1"], time_range=(12.0, 14.0))
    assert {h.clip_index for h in store.search("clips", unit(0), 10, flt)} == {1, 2}


def test_exclude_ids(store: ClipStore) -> None:
    store.create_collection("clips", DIM, model="m")
    points = [clip("v1", i, seed=i) for i in range(5)]
    store.upsert("clips", points)
    excluded = {points[0].id, points[1].id, "not-a-uuid"}
    hits = store.search("clips", points[0].pooled, 10, exclude_ids=excluded)
    assert {h.clip_index for h in hits} == {2, 3, 4}


def test_get_frames_round_trips_multivectors(store: ClipStore) -> None:
    store.create_collection("clips", DIM, model="m")
    points = [clip("v1", 0, frames=3), clip("v1", 1, frames=5), clip("v2", 0, frames=1)]
    store.upsert("clips", points)
    frames = store.get_frames("clips", [p.id for p in points] + [point_id("zz", 9), "junk"])
    assert set(frames) == {p.id for p in points}
    # to float16 precision: the layout stores frames in half precision (a server does; local mode keeps float32)
    for p in points:
        assert frames[p.id].dtype == np.float32
        np.testing.assert_allclose(frames[p.id], p.frames, rtol=FLOAT16_RTOL, atol=FLOAT16_ATOL)
    hit = store.search("clips", points[1].pooled, 1, with_frames=True)[0]
    assert hit.frames is not None
    np.testing.assert_allclose(hit.frames, points[1].frames, rtol=FLOAT16_RTOL, atol=FLOAT16_ATOL)


def test_clip_spans_name_the_video_and_time_span_of_each_stored_clip_id(store: ClipStore) -> None:
    store.create_collection("clips", DIM, model="m")
    points = [clip("v1", 0), clip("v1", 3), clip("v2", 1)]
    store.upsert("clips", points)
    spans = store.clip_spans("clips", [p.id for p in points] + [point_id("zz", 9), "junk"])
    assert set(spans) == {p.id for p in points}  # unknown and malformed ids name nothing
    for p in points:
        span = spans[p.id]
        assert (span.id, span.video_id, span.clip_index) == (p.id, p.video_id, p.clip_index)
        assert (span.start_s, span.end_s) == pytest.approx((p.start_s, p.end_s))
    assert store.clip_spans("clips", []) == {}
    with pytest.raises(CollectionNotFound):
        store.clip_spans("nope", [points[0].id])


def test_delete_video_removes_only_that_video(store: ClipStore) -> None:
    store.create_collection("clips", DIM, model="m")
    store.upsert(
        "clips", [clip(v, i, seed=10 * k + i) for k, v in enumerate(["va", "vb", "vc"]) for i in range(3)]
    )
    assert store.list_videos("clips") == ["va", "vb", "vc"]
    assert store.delete_video("clips", "vb") == 3
    assert store.delete_video("clips", "vb") == 0
    assert not store.has_video("clips", "vb") and store.has_video("clips", "va")
    assert (store.count("clips"), store.count("clips", "va"), store.count("clips", "vb")) == (6, 3, 0)
    assert store.list_videos("clips") == ["va", "vc"]
    assert all(h.video_id != "vb" for h in store.search("clips", unit(11), 10))


def test_version_swap_serves_only_new_version_and_drops_old(store: ClipStore) -> None:
    store.create_collection("clips", DIM, model="m", adapter_version="a1")
    old_points = [clip("old", i, seed=i) for i in range(3)]
    store.upsert("clips", old_points)

    physical = store.new_version("clips", "a2")
    assert physical == "vs__clips__2"
    new_points = [clip("new", i, seed=100 + i) for i in range(4)]
    store.upsert("clips", new_points, physical=physical)
    # until activation, searches still see only the old version
    assert {h.video_id for h in store.search("clips", unit(0), 10)} == {"old"}

    store.activate_version("clips", physical)
    info = store.get_collection("clips")
    assert (info.physical, info.adapter_version, info.points) == (physical, "a2", 4)
    assert {h.video_id for h in store.search("clips", unit(0), 10)} == {"new"}
    with pytest.raises(CollectionNotFound):  # the old version is gone
        store.upsert("clips", old_points, physical="vs__clips__1")
    with pytest.raises(CollectionNotFound):
        store.activate_version("clips", "vs__other__2")


def test_a_switch_keeps_the_versions_that_served_before_up_to_keep(store: ClipStore) -> None:
    store.create_collection("clips", DIM, model="m", adapter_version="a1")
    store.upsert("clips", [clip("one", 0)])
    for n, adapter in ((2, "a2"), (3, "a3")):
        physical = store.new_version("clips", adapter)
        store.upsert("clips", [clip(f"v{n}", 0, seed=n)], physical=physical)
        store.activate_version("clips", physical, keep=1)

    versions = store.list_versions("clips")
    assert [(v.physical, v.live, v.adapter_version) for v in versions] == [
        ("vs__clips__3", True, "a3"),
        ("vs__clips__2", False, "a2"),  # the one that served before; version 1 is beyond keep=1
    ]
    assert [v.points for v in versions] == [1, 1]
    assert store.list_videos("clips", physical="vs__clips__2") == ["v2"]
    with pytest.raises(CollectionNotFound):
        store.list_videos("clips", physical="vs__clips__1")

    store.activate_version("clips", "vs__clips__2", keep=1)  # a rollback: the version it replaces stays
    assert [(v.physical, v.live) for v in store.list_versions("clips")] == [
        ("vs__clips__2", True),
        ("vs__clips__3", False),
    ]
    assert {h.video_id for h in store.search("clips", unit(0), 10)} == {"v2"}


def test_a_version_still_being_filled_is_neither_listed_nor_dropped_by_a_switch(store: ClipStore) -> None:
    store.create_collection("clips", DIM, model="m", adapter_version="a1")
    first = store.new_version("clips", "a2")
    pending = store.new_version("clips", "a3")  # a later re-index, not live yet
    store.activate_version("clips", first, keep=0)
    assert [v.physical for v in store.list_versions("clips")] == [first]
    store.upsert("clips", [clip("later", 0)], physical=pending)  # still there to be filled
    assert store.list_videos("clips", physical=pending) == ["later"]


def test_versions_survive_reopening(open_store: Opener) -> None:
    first = open_store()
    first.create_collection("clips", DIM, model="m", adapter_version="a1")
    physical = first.new_version("clips", "a2")
    first.activate_version("clips", physical, keep=2)
    first.close()
    again = open_store()
    assert [(v.physical, v.live) for v in again.list_versions("clips")] == [
        ("vs__clips__2", True),
        ("vs__clips__1", False),
    ]


def test_drop_version_removes_an_unfinished_version_but_never_the_live_one(store: ClipStore) -> None:
    store.create_collection("clips", DIM, model="m", adapter_version="a1")
    store.upsert("clips", [clip("live", 0)])
    pending = store.new_version("clips", "a2")
    store.upsert("clips", [clip("half", 0)], physical=pending)

    store.drop_version("clips", pending)
    with pytest.raises(CollectionNotFound):  # gone: nothing can be written to or activated from it
        store.activate_version("clips", pending)
    store.drop_version("clips", pending)  # idempotent, as a retried cleanup needs
    assert store.new_version("clips", "a3") == "vs__clips__2"  # its number is free again
    info = store.get_collection("clips")
    assert (info.physical, info.adapter_version, info.points) == ("vs__clips__1", "a1", 1)
    with pytest.raises(StoreError, match="live version"):
        store.drop_version("clips", "vs__clips__1")
    with pytest.raises(CollectionNotFound):
        store.drop_version("clips", "vs__other__2")
    assert {h.video_id for h in store.search("clips", unit(0), 10)} == {"live"}


def test_wrong_dimension_is_rejected(store: ClipStore) -> None:
    store.create_collection("clips", DIM, model="m")
    with pytest.raises(InvalidPoint):
        store.upsert("clips", [clip("v1", 0, dim=DIM + 1)])
    with pytest.raises(InvalidPoint):
        store.search("clips", unit(0, DIM + 1), 3)
    assert store.count("clips") == 0


def _nested_lists(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


# Metadata Qdrant Edge or qdrant-client would take and then fail on (or refuse with a bare TypeError): at 130
# levels an Edge shard can no longer be searched, nor opened after a restart.
UNREADABLE_METADATA: dict[str, dict[Any, Any]] = {
    "130 levels": {"x": _nested_lists(129)},
    "NaN": {"x": float("nan")},
    "Infinity in a list": {"x": [1.0, float("inf")]},
    "4000-digit integer": {"n": int("9" * 4000)},
    "2**64": {"n": 2**64},
    "lone surrogate": {"s": "\ud800"},
    "quote in a key": {'a"b': 1},
    "empty key": {"": 1},
    "tuple": {"t": (1, 2)},
}


@pytest.mark.parametrize("metadata", UNREADABLE_METADATA.values(), ids=UNREADABLE_METADATA.keys())
def test_a_payload_the_metadata_rules_refuse_is_never_written(
    open_store: Opener, metadata: dict[Any, Any]
) -> None:
    store = open_store()
    store.create_collection("clips", DIM, model="m")
    good = clip("v1", 0)
    store.upsert("clips", [good])
    bad = clip("v2", 1)
    bad.payload["metadata"] = metadata  # a library caller's ClipPoint: the store is the last line
    with pytest.raises(InvalidPoint, match=r"payload\.metadata"):
        store.upsert("clips", [clip("v2", 0), bad])
    assert store.count("clips") == 1  # nothing of the refused batch was written
    assert [hit.video_id for hit in store.search("clips", good.pooled, 5)] == ["v1"]
    store.close()
    reopened = open_store()
    assert [hit.video_id for hit in reopened.search("clips", good.pooled, 5)] == ["v1"]


def test_the_stores_own_payload_entries_obey_the_same_rules(store: ClipStore) -> None:
    store.create_collection("clips", DIM, model="m")
    bad = clip("v1", 0)
    bad.payload["source"] = float("nan")
    with pytest.raises(InvalidPoint, match=r"payload\.source"):
        store.upsert("clips", [bad])
    assert store.count("clips") == 0


def test_metadata_at_every_limit_is_read_back_and_filtered_after_a_reopen(open_store: Opener) -> None:
    metadata = {
        "deep": _nested_lists(MAX_METADATA_DEPTH - 1),  # the metadata object is the first level
        "lo": INT64_MIN,
        "hi": INT64_MAX,
        "big": 1e308,
        "long": "x" * MAX_METADATA_STRING_CHARS,
        "none": None,
        "a.b": "dot",
        "a[0]": "bracket",
        "a b": "space",
    }
    first = open_store()
    first.create_collection("clips", DIM, model="m")
    point = clip("v1", 0, metadata=metadata)
    first.upsert("clips", [point, clip("v2", 0)])
    first.close()
    store = open_store()
    hit = store.search("clips", point.pooled, 1)[0]
    assert hit.payload["metadata"] == metadata
    assert type(hit.payload["metadata"]["hi"]) is int
    for key in ("a.b", "a[0]", "a b"):
        found = store.search("clips", point.pooled, 5, SearchFilter(metadata={key: metadata[key]}))
        assert [h.video_id for h in found] == ["v1"], key


def test_reopen_finds_the_same_data(open_store: Opener) -> None:
    first = open_store()
    first.create_collection("clips", DIM, model="m", adapter_version="a1")
    points = [clip("v1", i, seed=i, metadata={"cam": "x"}) for i in range(5)]
    first.upsert("clips", points)
    physical = first.new_version("clips", "a2")
    first.upsert("clips", points[:2], physical=physical)
    first.activate_version("clips", physical)
    first.close()

    second = open_store()
    info = second.get_collection("clips")
    assert (info.physical, info.adapter_version, info.points) == (physical, "a2", 2)
    assert (
        second.search("clips", points[1].pooled, 1, SearchFilter(metadata={"cam": "x"}))[0].id == points[1].id
    )
    np.testing.assert_allclose(
        second.get_frames("clips", [points[0].id])[points[0].id],
        points[0].frames,
        rtol=FLOAT16_RTOL,
        atol=FLOAT16_ATOL,
    )


def test_concurrent_searches_and_upserts(store: ClipStore) -> None:
    store.create_collection("clips", DIM, model="m")
    store.upsert("clips", [clip("seed", i, seed=i) for i in range(10)])
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            store.upsert("clips", [clip(f"w{k}", i, seed=1000 * k + i) for i in range(10)])
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(10):
                assert store.search("clips", unit(5), 5)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(3)]
    threads += [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.count("clips") == 40


# ------------------------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class Layout:
    """What a backend reports about one collection's physical layout."""

    # name -> distance, multivector comparator, hnsw m (None: default graph), int8 quantile (None: no int8 copy),
    # datatype (None: float32), on_disk (the originals memory-mapped, not held in RAM), int8_in_ram
    vectors: dict[str, dict[str, Any]]
    default_hnsw_m: int | None  # the collection-wide graph setting, where the backend reports one
    indexed: set[str]  # payload fields with an index


def _edge_layout(store: EdgeClipStore, name: str) -> Layout:
    """Edge keeps its config next to the shard and reports its payload indexes itself."""
    shard = store._active(name)
    config = shard_layout(store._catalog.shard_dir(shard.physical))
    vectors = {
        vec: {
            "distance": params["distance"].lower(),
            "multivector": (params.get("multivector_config") or {}).get("comparator"),
            "hnsw_m": (params.get("hnsw_config") or {}).get("m"),
            "int8_quantile": _edge_int8_quantile(params.get("quantization_config")),
            "datatype": params.get("datatype"),
            "on_disk": params.get("memory") == "cold" or params.get("on_disk") is True,
            "int8_in_ram": _edge_int8_in_ram(params.get("quantization_config")),
        }
        for vec, params in _edge_vectors(store, shard.physical).items()
    }
    default_m = (config.get("hnsw_config") or {}).get("m")
    return Layout(vectors, default_m, {_path(key) for key in shard.shard.info().payload_schema})


def _edge_vectors(store: EdgeClipStore, physical: str) -> dict[str, Any]:
    """The vectors a version stores, over its main shard and (in the layout for scale) its frames shard."""
    vectors = dict(shard_layout(store._catalog.shard_dir(physical))["vectors"])
    frames_dir = store._catalog.frames_dir(physical)
    if frames_dir.is_dir():
        vectors.update(shard_layout(frames_dir)["vectors"])
    return vectors


def _edge_int8_quantile(config: dict[str, Any] | None) -> float | None:
    scalar = (config or {}).get("scalar") or {}
    return scalar.get("quantile") if scalar.get("type") == "int8" else None


def _edge_int8_in_ram(config: dict[str, Any] | None) -> bool | None:
    scalar = (config or {}).get("scalar")
    if not scalar:
        return None
    return scalar.get("memory") == "pinned" or scalar.get("always_ram") is True


def _server_int8_in_ram(config: object) -> bool | None:
    scalar = getattr(config, "scalar", None)
    return None if scalar is None else scalar.always_ram is True


def _server_int8_quantile(config: object) -> float | None:
    scalar = getattr(config, "scalar", None)
    return scalar.quantile if scalar is not None and scalar.type.value == "int8" else None


def _path(key: str) -> str:
    """A JSON path without optional quotes: Edge reports ``metadata."lang"`` back as ``metadata.lang``."""
    return key.replace('"', "")


def _server_layout(store: ServerClipStore, name: str) -> Layout:
    """The collection as the server API describes it. Local mode ignores payload indexes (its schema stays
    empty), so there the indexes are the ones the store created, or would have on a server."""
    physical, _ = store._resolve(name)
    info = store._client.get_collection(physical)
    params = info.config.params.vectors
    assert isinstance(params, dict)
    vectors = {
        vec: {
            "distance": str(p.distance.value).lower(),
            "multivector": p.multivector_config.comparator.value if p.multivector_config else None,
            "hnsw_m": p.hnsw_config.m if p.hnsw_config else None,
            "int8_quantile": _server_int8_quantile(p.quantization_config),
            "datatype": p.datatype.value if p.datatype is not None else None,
            "on_disk": p.on_disk is True,
            "int8_in_ram": _server_int8_in_ram(p.quantization_config),
        }
        for vec, p in params.items()
    }
    indexed = set(info.payload_schema) if not store._local else set(store._indexed[physical])
    return Layout(vectors, info.config.hnsw_config.m, {_path(key) for key in indexed})


def _layout(store: ClipStore, name: str) -> Layout:
    if isinstance(store, EdgeClipStore):
        return _edge_layout(store, name)
    assert isinstance(store, ServerClipStore)
    return _server_layout(store, name)


def test_pooled_is_a_cosine_hnsw_vector_on_int8_and_frames_a_maxsim_multivector_without_a_graph(
    store: ClipStore,
) -> None:
    store.create_collection("clips", DIM, model="m")
    layout = _layout(store, "clips")
    assert set(layout.vectors) == {"pooled", "frames"}
    pooled, frames = layout.vectors["pooled"], layout.vectors["frames"]
    assert (pooled["distance"], pooled["multivector"]) == ("cosine", None)
    # HNSW for the ANN stage: no per-vector override, or one that keeps a graph, on a default with a graph.
    assert pooled["hnsw_m"] is None or pooled["hnsw_m"] > 0
    assert layout.default_hnsw_m is None or layout.default_hnsw_m > 0
    assert frames["multivector"] == "max_sim"
    assert frames["hnsw_m"] == 0  # read back for re-ranking only: building a graph cost 20x optimize time
    # The graph walks an int8 copy of pooled (4x faster at 512-d, 100k clips); frames stay exact floats.
    assert pooled["int8_quantile"] == POOLED_INT8_QUANTILE
    assert frames["int8_quantile"] is None
    # A re-index's new version is laid out the same way.
    store.activate_version("clips", store.new_version("clips", "a2"))
    assert _layout(store, "clips").vectors == layout.vectors


def test_only_the_int8_copy_stays_in_ram_and_frames_are_stored_in_half_precision(store: ClipStore) -> None:
    """The layout for scale (issue 17): at 512-d x 12 frames, float32 frames held in RAM were 24.6 KB per clip."""
    store.create_collection("clips", DIM, model="m")
    layout = _layout(store, "clips")
    pooled, frames = layout.vectors["pooled"], layout.vectors["frames"]
    assert frames["datatype"] == "float16"
    assert frames["on_disk"] is True
    # pooled: the int8 copy the graph walks in RAM, the float originals (rescoring only) on disk
    assert pooled["datatype"] is None
    assert (pooled["int8_in_ram"], pooled["on_disk"]) == (True, True)
    store.activate_version("clips", store.new_version("clips", "a2"))
    assert _layout(store, "clips").vectors == layout.vectors


def test_a_store_made_with_the_layout_before_half_precision_frames_opens_and_keeps_it(
    open_store: Opener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store a user already has must keep working: its collections keep their layout, new ones get the new."""
    import videoseek.store.edge as edge_module
    import videoseek.store.server as server_module

    with monkeypatch.context() as old_code:  # the store as the code before issue 17 created it
        old_code.setattr(edge_module, "edge_config", legacy_edge_config)
        old_code.setattr(server_module, "vectors_config", server_module.legacy_vectors_config)
        first = open_store()
        first.create_collection("clips", DIM, model="m")
        points = [clip("v1", i, seed=i, metadata={"cam": "x"}) for i in range(6)]
        first.upsert("clips", points[:4])
        old_layout = _layout(first, "clips").vectors
        first.close()
    assert old_layout["frames"]["datatype"] is None and old_layout["pooled"]["on_disk"] is False

    second = open_store()
    assert _layout(second, "clips").vectors == old_layout  # detected as it is, never rewritten
    second.upsert("clips", points[4:])
    if isinstance(second, EdgeClipStore):
        second.optimize("clips")
    assert second.count("clips") == 6
    hits = second.search("clips", points[5].pooled, 1, SearchFilter(metadata={"cam": "x"}), with_frames=True)
    assert hits[0].id == points[5].id
    frames = second.get_frames("clips", [p.id for p in points])
    for p in points:  # float32 as before: exactly what was written
        np.testing.assert_array_equal(frames[p.id], p.frames)
    # what is created from now on, a re-index's version or a new collection, gets the new layout
    second.activate_version("clips", second.new_version("clips", "a2"))
    assert _layout(second, "clips").vectors["frames"]["datatype"] == "float16"
    second.create_collection("fresh", DIM, model="m")
    assert _layout(second, "fresh").vectors["frames"]["datatype"] == "float16"


def test_every_field_a_search_filter_uses_has_a_payload_index(store: ClipStore) -> None:
    from videoseek.store.base import filter_conditions

    store.create_collection("clips", DIM, model="m")
    store.upsert("clips", [clip("v1", 0, metadata={"lang": "en", "n": 3, "hd": True, "score": 0.5})])
    search_filter = SearchFilter(
        video_ids=["v1"], metadata={"lang": "en", "n": 3, "hd": True, "score": 0.5}, time_range=(1.0, 8.0)
    )
    filtered = {_path(condition.key) for condition in filter_conditions(search_filter)}
    assert {"video_id", "start_s", "end_s"} <= filtered
    missing = filtered - _layout(store, "clips").indexed
    assert not missing, f"filtered without an index: {sorted(missing)}"
    # A new version (re-index) is laid out the same way before any point reaches it.
    store.activate_version("clips", store.new_version("clips", "a2"))
    assert {"video_id", "start_s", "end_s"} <= _layout(store, "clips").indexed


# ------------------------------------------------------------------------ MaxSim re-scoring of a prefetch


def _axis(i: int) -> np.ndarray:
    return np.eye(DIM, dtype=np.float32)[i]


def _clip_of(video_id: str, index: int, frames: list[np.ndarray]) -> ClipPoint:
    stacked = np.stack(frames).astype(np.float32)
    pooled = stacked.mean(axis=0)
    return ClipPoint(
        video_id=video_id,
        clip_index=index,
        start_s=index * 5.0,
        end_s=index * 5.0 + 4.0,
        pooled=pooled if np.any(pooled) else _axis(7),
        frames=stacked,
        frame_times=[index * 5.0 + f for f in range(len(frames))],
        payload={"metadata": {}},
    )


@dataclass(frozen=True)
class MomentWorld:
    """Query axis 0. By pooled cosine: 6 ``steady`` clips (0.8), then ``moment`` (0.5), 3 ``filler`` (~0.2),
    ``far`` (0) last; by their best frame: far (4), moment (2), steady (0.8), filler (0.2)."""

    query: np.ndarray
    steady: list[ClipPoint]
    moment: ClipPoint
    filler: list[ClipPoint]
    far: ClipPoint

    @property
    def by_pooled(self) -> list[ClipPoint]:
        return [*self.steady, self.moment, *self.filler, self.far]


def _moment_world(store: ClipStore) -> MomentWorld:
    e = _axis
    steady = [_clip_of("steady", k, [0.8 * e(0) + 0.6 * e(1 + k)] * 3) for k in range(6)]
    moment = _clip_of("moment", 0, [2 * e(0), 2 * e(1), 2 * e(2), 2 * e(3)])  # one frame shows it
    filler = [_clip_of("filler", k, [0.2 * e(0) + 0.98 * e(4 + k)] * 3) for k in range(3)]
    far = _clip_of("far", 0, [4 * e(0), -4 * e(0) + e(7)])  # the mean hides its best frame entirely
    world = MomentWorld(e(0), steady, moment, filler, far)
    store.create_collection("clips", DIM, model="m")
    store.upsert("clips", world.by_pooled)
    return world


def test_the_maxsim_stage_returns_the_clip_whose_best_frame_matches_though_its_pooled_rank_is_beyond_the_limit(
    store: ClipStore,
) -> None:
    world = _moment_world(store)
    assert store.get_collection("clips").frames_maxsim
    by_pooled = store.search("clips", world.query, limit=6)
    assert {h.id for h in by_pooled} == {c.id for c in world.steady}  # the moment is 7th by pooled
    hits = store.search("clips", world.query, limit=3, prefetch=7, with_frames=True)
    assert [h.id for h in hits][:1] == [world.moment.id]
    assert len(hits) == 3 and all(a.score >= b.score for a, b in itertools.pairwise(hits))
    # the score is MaxSim, max_j <q, f_j>, of the stored (half-precision) frames
    assert hits[0].score == pytest.approx(2.0, rel=FLOAT16_RTOL)
    assert hits[1].score == pytest.approx(0.8, rel=FLOAT16_RTOL)
    assert hits[0].frames is not None
    np.testing.assert_allclose(hits[0].frames, world.moment.frames, rtol=FLOAT16_RTOL, atol=FLOAT16_ATOL)
    assert (hits[0].video_id, hits[0].frame_times) == ("moment", world.moment.frame_times)


def test_the_maxsim_stage_re_scores_only_the_pooled_prefetch(store: ClipStore) -> None:
    world = _moment_world(store)
    assert store.search("clips", world.query, limit=1, prefetch=10)[0].id == world.moment.id
    assert store.search("clips", world.query, limit=1, prefetch=11)[0].id == world.far.id
    # a prefetch smaller than the limit still returns `limit` hits: the prefetch is at least the limit
    assert len(store.search("clips", world.query, limit=11, prefetch=2)) == 11


def test_filters_and_excluded_ids_apply_to_the_maxsim_prefetch(store: ClipStore) -> None:
    world = _moment_world(store)
    no_moment = SearchFilter(exclude_video_ids=("moment",))
    assert store.search("clips", world.query, 1, no_moment, prefetch=7)[0].video_id == "steady"
    assert store.search("clips", world.query, 1, prefetch=7, exclude_ids={world.moment.id})[0].video_id == (
        "steady"
    )
    # filtered in the prefetch, not after it: unfiltered, the pooled top 4 are all steady clips
    only = SearchFilter(video_ids=["filler", "far"])
    assert [h.video_id for h in store.search("clips", world.query, 3, only, prefetch=3)] == ["filler"] * 3
    assert [h.video_id for h in store.search("clips", world.query, 3, only, prefetch=4)][:1] == ["far"]
    assert store.search("clips", world.query, 5, SearchFilter(video_ids=[]), prefetch=7) == []


def test_a_store_in_the_layout_before_half_precision_frames_re_scores_by_maxsim_too(
    open_store: Opener, monkeypatch: pytest.MonkeyPatch
) -> None:
    import videoseek.store.edge as edge_module
    import videoseek.store.server as server_module

    with monkeypatch.context() as old_code:
        old_code.setattr(edge_module, "edge_config", legacy_edge_config)
        old_code.setattr(server_module, "vectors_config", server_module.legacy_vectors_config)
        first = open_store()
        world = _moment_world(first)
        first.close()
    second = open_store()
    assert second.get_collection("clips").frames_maxsim
    hit = second.search("clips", world.query, 1, prefetch=7)[0]
    assert (hit.id, hit.score) == (world.moment.id, pytest.approx(2.0, rel=1e-6))  # float32 frames: exact


def _cosine_frames_edge(dim: int) -> Any:
    import qdrant_edge as qe

    frames = qe.EdgeVectorParams(
        size=dim,
        distance=qe.Distance.Cosine,
        multivector_config=qe.MultiVectorConfig(qe.MultiVectorComparator.MaxSim),
        hnsw_config=qe.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10_000),
    )
    return qe.EdgeConfig(vectors={"pooled": legacy_edge_config(dim).vectors["pooled"], "frames": frames})


def _cosine_frames_server(dim: int) -> Any:
    from qdrant_client import models as qm

    from videoseek.store.server import legacy_vectors_config

    config = legacy_vectors_config(dim)
    config["frames"] = config["frames"].model_copy(update={"distance": qm.Distance.COSINE})
    return config


def test_a_collection_whose_frames_cannot_maxsim_ignores_the_prefetch_and_ranks_by_pooled(
    open_store: Opener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cosine frames would MaxSim over normalised frames, not the dot products the re-ranking weighs: such a
    layout (none videoseek ever made) is searched by pooled alone, and says so in ``frames_maxsim``."""
    import videoseek.store.edge as edge_module
    import videoseek.store.server as server_module

    with monkeypatch.context() as other_layout:
        other_layout.setattr(edge_module, "edge_config", _cosine_frames_edge)
        other_layout.setattr(server_module, "vectors_config", _cosine_frames_server)
        first = open_store()
        world = _moment_world(first)
        assert not first.get_collection("clips").frames_maxsim
        first.close()
    second = open_store()  # detected from the stored layout after a reopen too
    assert not second.get_collection("clips").frames_maxsim
    plain = second.search("clips", world.query, 6)
    assert [h.id for h in second.search("clips", world.query, 6, prefetch=11)] == [h.id for h in plain]
    assert world.moment.id not in {h.id for h in plain}
