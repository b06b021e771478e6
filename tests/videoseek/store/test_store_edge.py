"""Edge-only behaviour: the on-disk catalog, single-process ownership, automatic optimisation."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import qdrant_edge as qe
from store_testdata import DIM, clip, unit

from videoseek.store import CollectionUnreadable, SearchFilter, StoreError, StoreUnavailable, point_id
from videoseek.store.base import VECTOR_FRAMES, VECTOR_POOLED
from videoseek.store.edge import STORE_LOCK_FILE, EdgeClipStore
from videoseek.store.edge_catalog import ALIASES_FILE, FRAMES_DIR
from videoseek.store.edge_layout import combined_edge_config, shard_layout
from videoseek.store.locks import ReadWriteLock


def test_alias_switch_rewrites_the_catalog_and_removes_the_old_shard(tmp_path: Path) -> None:
    store = EdgeClipStore(tmp_path)
    store.create_collection("clips", DIM, model="m", adapter_version="a1")
    store.upsert("clips", [clip("v1", 0)])
    physical = store.new_version("clips", "a2")
    store.activate_version("clips", physical)
    store.close()

    catalog = json.loads((tmp_path / ALIASES_FILE).read_text())
    assert catalog["aliases"] == {"clips": "vs__clips__2"}
    meta = json.loads((tmp_path / "vs__clips__2.json").read_text())
    assert (meta["collection"], meta["dim"], meta["model"], meta["adapter_version"]) == (
        "clips",
        DIM,
        "m",
        "a2",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        STORE_LOCK_FILE,
        ALIASES_FILE,
        FRAMES_DIR,
        "vs__clips__2",
        "vs__clips__2.json",
    ]
    assert [p.name for p in (tmp_path / FRAMES_DIR).iterdir()] == ["vs__clips__2"]  # its frames, and only its


def test_a_second_store_on_the_same_directory_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    """Not only its shards: the catalog too has one owner, so a collection the second one would create is
    never one the first does not see (and overwrites in aliases.json)."""
    first = EdgeClipStore(tmp_path)
    first.create_collection("clips", DIM, model="m")
    with pytest.raises(StoreUnavailable, match="another process"):
        EdgeClipStore(tmp_path)  # refused at open, before it reads a catalog that may change under it
    first.close()
    second = EdgeClipStore(tmp_path)
    try:
        assert second.get_collection("clips").name == "clips"
    finally:
        second.close()


def test_a_store_held_by_a_killed_process_opens_again(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    code = (
        "import sys; from pathlib import Path; from videoseek.store.edge import EdgeClipStore;"
        "store = EdgeClipStore(Path(sys.argv[1])); store.create_collection('clips', 8, model='m');"
        "print('open', flush=True); sys.stdin.read()"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        with pytest.raises(StoreUnavailable, match="another process"):
            EdgeClipStore(tmp_path)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
    reopened = EdgeClipStore(tmp_path)  # the kernel dropped the lock with its holder: nothing to clean up
    try:
        assert [c.name for c in reopened.list_collections()] == ["clips"]
    finally:
        reopened.close()


def test_pending_versions_survive_restart_and_are_deleted_with_the_collection(tmp_path: Path) -> None:
    store = EdgeClipStore(tmp_path)
    store.create_collection("clips", DIM, model="m")
    store.create_collection("clips__2", DIM, model="m")  # a name that looks like a version suffix
    pending = store.new_version("clips", "a2")
    store.close()

    store = EdgeClipStore(tmp_path)
    assert store.new_version("clips", "a3") == "vs__clips__3"  # never reuses the pending version's name
    store.upsert("clips", [clip("v1", 0)], physical=pending)
    store.delete_collection("clips")
    store.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        STORE_LOCK_FILE,
        ALIASES_FILE,
        FRAMES_DIR,
        "vs__clips__2__1",
        "vs__clips__2__1.json",
    ]
    assert [p.name for p in (tmp_path / FRAMES_DIR).iterdir()] == ["vs__clips__2__1"]


def test_searches_stay_exact_across_automatic_optimisation(tmp_path: Path) -> None:
    store = EdgeClipStore(tmp_path, optimize_every=4, batch_size=3)
    store.create_collection("clips", DIM, model="m")
    points = [clip("v1", i, seed=i) for i in range(10)]
    for start in range(0, 10, 5):
        store.upsert("clips", points[start : start + 5])
    assert store.count("clips") == 10
    for p in points:
        assert store.search("clips", p.pooled, 1)[0].id == p.id
    # frames are stored in float16 (edge_config): exact to its precision
    np.testing.assert_allclose(
        store.get_frames("clips", [points[9].id])[points[9].id], points[9].frames, rtol=2.0**-10, atol=1e-6
    )
    store.close()


def test_a_closed_store_refuses_calls(tmp_path: Path) -> None:
    store = EdgeClipStore(tmp_path)
    store.create_collection("clips", DIM, model="m")
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.search("clips", unit(0), 3)


def test_lifecycle_lock_waits_for_running_readers_and_holds_back_new_ones() -> None:
    lock = ReadWriteLock()
    order: list[str] = []
    reader_in, writer_waiting = threading.Event(), threading.Event()

    def first_reader() -> None:
        with lock.shared():
            reader_in.set()
            writer_waiting.wait(5)
            time.sleep(0.05)
            order.append("reader1 done")

    def writer() -> None:
        reader_in.wait(5)
        writer_waiting.set()
        with lock.exclusive():
            order.append("writer")

    def late_reader() -> None:
        writer_waiting.wait(5)
        time.sleep(0.02)  # arrives while the writer waits
        with lock.shared():
            order.append("reader2")

    threads = [threading.Thread(target=f) for f in (first_reader, writer, late_reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert order == ["reader1 done", "writer", "reader2"]


def test_a_reopened_store_knows_which_metadata_fields_are_indexed(tmp_path: Path) -> None:
    # Edge reports metadata."lang" back as metadata.lang; read as written, so a reopened store neither
    # re-creates its indexes on every upsert nor counts them twice against MAX_METADATA_INDEXES.
    store = EdgeClipStore(tmp_path)
    store.create_collection("clips", DIM, model="m")
    store.upsert("clips", [clip("v1", 0, metadata={"lang": "en", "n": 3})])
    physical = store.get_collection("clips").physical
    written = set(store._open(physical).indexed)
    store.close()
    reopened = EdgeClipStore(tmp_path)
    try:
        assert reopened._open(physical).indexed == written
        assert {'metadata."lang"', 'metadata."n"'} <= written
    finally:
        reopened.close()


def garble_the_wal(shard_dir: Path) -> None:
    """What a torn write or a failing disk leaves: the WAL's first segment starts with garbage."""
    with (shard_dir / "wal" / "open-1").open("r+b") as wal:
        wal.write(b"\xff" * 4096)


def write_a_point_edge_cannot_read_back(shard_dir: Path) -> None:
    """What this store let in before the metadata rules: a point nested 130 levels deep, which Edge accepts
    and then cannot replay from its WAL (``failed to read WAL entry``)."""
    nested: Any = 1
    for _ in range(130):
        nested = [nested]
    shard = qe.EdgeShard.load(str(shard_dir))
    vectors: dict[str, Any] = {VECTOR_POOLED: unit(0).tolist()}  # the main shard's one vector
    payload = {"video_id": "old", "metadata": {"x": nested}}
    shard.update(qe.UpdateOperation.upsert_points([qe.Point(point_id("old", 0), vectors, payload)]))
    shard.close()


def lose_the_frames_shard(shard_dir: Path) -> None:
    """A version's frames shard gone (a restore that missed ``frames/``): the version cannot rank."""
    shutil.rmtree(shard_dir.parent / FRAMES_DIR / shard_dir.name)


@pytest.mark.parametrize(
    "damage",
    [garble_the_wal, write_a_point_edge_cannot_read_back, lose_the_frames_shard],
    ids=["garbage WAL", "130-level point", "frames shard gone"],
)
def test_a_shard_that_cannot_be_opened_leaves_the_store_and_the_other_collections_serving(
    tmp_path: Path, damage: Callable[[Path], None]
) -> None:
    store = EdgeClipStore(tmp_path)
    for name in ("broken", "fine"):
        store.create_collection(name, DIM, model="m")
        store.upsert(name, [clip("v1", 0), clip("v2", 0)])
    store.close()
    damage(tmp_path / "vs__broken__1")

    store = EdgeClipStore(tmp_path)
    try:
        assert [c.name for c in store.list_collections()] == ["fine"]
        problems = store.unreadable_collections()
        assert list(problems) == ["broken"]
        assert "collection 'broken' cannot be opened" in problems["broken"] and "DELETE" in problems["broken"]
        # what to restore: both of the version's folders, whichever of them is damaged
        assert str(tmp_path / "vs__broken__1") in problems["broken"]
        assert str(tmp_path / FRAMES_DIR / "vs__broken__1") in problems["broken"]
        assert [h.video_id for h in store.search("fine", clip("v1", 0).pooled, 1)] == ["v1"]
        store.upsert("fine", [clip("v3", 0)])
        assert store.count("fine") == 3
        calls: list[Callable[[], object]] = [
            lambda: store.search("broken", unit(0), 3),
            lambda: store.upsert("broken", [clip("v3", 0)]),
            lambda: store.get_collection("broken"),
            lambda: store.delete_video("broken", "v1"),
        ]
        for call in calls:
            with pytest.raises(CollectionUnreadable, match="'broken'"):
                call()
        store.delete_collection("broken")  # the way out: delete it, then ingest its videos again
        assert store.unreadable_collections() == {}
        store.create_collection("broken", DIM, model="m")
        store.upsert("broken", [clip("v1", 0)])
        assert store.count("broken") == 1
    finally:
        store.close()


# ------------------------------------------------------------------------------- frames in their own shard


def test_the_shard_a_query_walks_holds_no_frames_and_the_frames_shard_follows_every_write(
    tmp_path: Path,
) -> None:
    """Edge caps a segment's bytes and a query walks every segment: frames beside the pooled vectors made a
    million clips 27 segments (issue 17). They live in ``frames/<version>`` and go where their clip goes."""
    store = EdgeClipStore(tmp_path)
    try:
        store.create_collection("clips", DIM, model="m")
        points = [clip("v1", i) for i in range(3)] + [clip("v2", i) for i in range(2)]
        store.upsert("clips", points)
        version = store._active("clips")
        assert set(shard_layout(tmp_path / version.physical)["vectors"]) == {VECTOR_POOLED}
        assert set(shard_layout(tmp_path / FRAMES_DIR / version.physical)["vectors"]) == {VECTOR_FRAMES}
        assert version.frames is not None
        assert version.frames.count(qe.CountRequest(exact=True)) == 5
        assert store.delete_video("clips", "v1") == 3
        assert version.frames.count(qe.CountRequest(exact=True)) == 2  # v1's frames went with v1
        assert set(store.get_frames("clips", [p.id for p in points])) == {p.id for p in points[3:]}
        store.delete_collection("clips")
        assert list((tmp_path / FRAMES_DIR).iterdir()) == []
    finally:
        store.close()


def _both_layouts(tmp_path: Path) -> tuple[EdgeClipStore, EdgeClipStore]:
    """The same clips in a store of today's layout and in one made with frames in the main shard, reopened."""
    points = [clip(f"v{v}", i, frames=4) for v in range(6) for i in range(5)]
    for layout, config in (("apart", None), ("combined", combined_edge_config)):
        store = EdgeClipStore(tmp_path / layout, shard_config=config)
        store.create_collection("clips", DIM, model="m")
        store.upsert("clips", points)
        store.close()
    return EdgeClipStore(tmp_path / "apart"), EdgeClipStore(tmp_path / "combined")


def test_reranking_frames_read_from_their_own_shard_ranks_and_scores_as_the_engines_maxsim(
    tmp_path: Path,
) -> None:
    apart, combined = _both_layouts(tmp_path)
    try:
        assert combined._active("clips").frames is None  # kept its layout: frames in the main shard
        assert not (tmp_path / "combined" / FRAMES_DIR).exists()
        for seed in range(12):
            query = unit(1000 + seed) * 3.0
            flt = SearchFilter(video_ids=["v1", "v2", "v4"]) if seed % 3 == 0 else None
            ours = apart.search("clips", query, 5, flt, with_frames=True, prefetch=12)
            engine = combined.search("clips", query, 5, flt, with_frames=True, prefetch=12)
            assert [h.id for h in ours] == [h.id for h in engine]
            assert [h.score for h in ours] == pytest.approx([h.score for h in engine], rel=1e-3)
            for mine, theirs in zip(ours, engine, strict=True):
                assert mine.frames is not None and theirs.frames is not None
                np.testing.assert_allclose(mine.frames, theirs.frames, rtol=1e-6)
            plain = [h.id for h in apart.search("clips", query, 5, flt)]
            assert plain == [h.id for h in combined.search("clips", query, 5, flt)]
    finally:
        apart.close()
        combined.close()


def test_a_frames_shard_left_by_a_create_cut_short_is_not_taken_for_the_new_version(tmp_path: Path) -> None:
    store = EdgeClipStore(tmp_path)
    try:
        store.create_collection("old", DIM, model="m")
        store.upsert("old", [clip("stale", 0)])
        stale = tmp_path / FRAMES_DIR / "vs__old__1"
        store.close()
        shutil.copytree(stale, tmp_path / FRAMES_DIR / "vs__clips__1")  # frames of a version never finished
        store = EdgeClipStore(tmp_path)
        store.create_collection("clips", DIM, model="m")
        assert store.get_frames("clips", [clip("stale", 0).id]) == {}
        store.upsert("clips", [clip("v1", 0)])
        assert set(store.get_frames("clips", [clip("v1", 0).id, clip("stale", 0).id])) == {clip("v1", 0).id}
    finally:
        store.close()


class _MainShardFails:
    """A version's main shard whose writes fail (a full disk), and, with ``reads_fail``, its reads too."""

    def __init__(self, inner: Any, *, reads_fail: bool = False) -> None:
        self.inner = inner
        self.reads_fail = reads_fail

    def update(self, operation: Any) -> None:
        raise RuntimeError("No space left on device")

    def retrieve(self, *args: Any) -> Any:
        if self.reads_fail:
            raise RuntimeError("No space left on device")
        return self.inner.retrieve(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.parametrize("reads_fail", [False, True], ids=["taken back", "left behind"])
def test_frames_a_failed_write_put_in_before_its_clip_are_never_read_and_go_with_the_video(
    tmp_path: Path, reads_fail: bool
) -> None:
    store = EdgeClipStore(tmp_path)
    try:
        store.create_collection("clips", DIM, model="m")
        store.upsert("clips", [clip("v1", 0)])
        version = store._active("clips")
        assert version.frames is not None
        inner, version.shard = version.shard, _MainShardFails(version.shard, reads_fail=reads_fail)
        with pytest.raises(StoreError, match="No space left"):
            store.upsert("clips", [clip("v1", 0), clip("v9", 0)])
        version.shard = inner
        assert store.count("clips") == 1 and not store.has_video("clips", "v9")
        assert version.frames.count(qe.CountRequest(exact=True)) == (2 if reads_fail else 1)
        assert set(store.get_frames("clips", [clip("v1", 0).id, clip("v9", 0).id])) == {clip("v1", 0).id}
        assert store.delete_video("clips", "v9") == 0  # what a failed ingest job does: its frames go too
        assert version.frames.count(qe.CountRequest(exact=True)) == 1
        store.upsert("clips", [clip("v9", 0)])  # the retry
        assert set(store.get_frames("clips", [clip("v9", 0).id])) == {clip("v9", 0).id}
    finally:
        store.close()


def test_dropping_a_version_closes_both_of_its_shards_even_when_one_fails_and_says_so(tmp_path: Path) -> None:
    store = EdgeClipStore(tmp_path)
    try:
        store.create_collection("clips", DIM, model="m")
        physical = store.new_version("clips", "a2")
        version = store._open(physical)
        main, frames = version.shard, version.frames
        assert frames is not None
        closed: list[str] = []

        class Closing:
            def __init__(self, inner: Any, name: str, fails: bool) -> None:
                self.inner, self.name, self.fails = inner, name, fails

            def close(self) -> None:
                if self.fails:
                    raise RuntimeError("I/O error")
                closed.append(self.name)
                self.inner.close()

        version.shard, version.frames = Closing(main, "main", True), Closing(frames, "frames", False)
        with pytest.raises(StoreError, match=r"closing .*I/O error"):
            store.drop_version("clips", physical)
        assert closed == ["frames"]
        main.close()
    finally:
        store.close()
