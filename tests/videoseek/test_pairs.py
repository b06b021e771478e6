"""The pair store, one contract for both: SQLite (embedded, survives a reopen) and Redis (distributed)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from videoseek.pairs import (
    MAX_TEXT_CHARS,
    PAIR_KINDS,
    InvalidPair,
    PairDraft,
    PairStore,
    TrainingPair,
    check_window,
    feedback_pair,
    iter_pairs,
    text_pair,
)
from videoseek.pairs_sqlite import SqlitePairStore
from worker.redis_pairs import RedisPairStore

V1, V2 = "ab" * 32, "cd" * 32
CLIP = "6f1c3c1e-2b7d-5d3a-9a51-0c7e5b1d9e42"

Opener = Callable[[], PairStore]


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    opened: list[PairStore] = []

    def opener() -> PairStore:
        if request.param == "sqlite":
            store: PairStore = SqlitePairStore(tmp_path / "pairs.sqlite3")
        else:
            url = request.getfixturevalue("redis_url")
            store = RedisPairStore(url, request.getfixturevalue("redis_prefix"))
        opened.append(store)
        return store

    yield opener
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: Opener) -> PairStore:
    return open_store()


def caption(text: str, video: str = V1, start: float | None = None, end: float | None = None) -> TrainingPair:
    return text_pair("films", video, "caption", text, start, end, source="test")


def test_pairs_round_trip_with_every_field(store: PairStore) -> None:
    pairs = [
        caption("a red ball bounces", start=1.5, end=4.0),
        text_pair("films", V1, "subtitle", "hello there", 2.0, 3.0, source="subtitle track 2 (eng)"),
        feedback_pair("films", "red ball", CLIP, V2, 5.0, 15.0, relevant=False, source="api"),
        caption("the whole video"),
    ]
    assert store.add(pairs) == 4
    listed = store.list("films").pairs
    assert [p.id for p in listed] == [p.id for p in pairs]  # oldest first
    for stored, given in zip(listed, pairs, strict=True):
        assert stored.seq > 0
        assert stored == TrainingPair(**{**given.to_dict(), "seq": stored.seq})
    assert listed[1].weak and listed[1].kind == "subtitle"
    assert listed[2].negative and listed[2].clip_id == CLIP
    assert (listed[3].start_s, listed[3].end_s) == (None, None)
    assert store.get("films", pairs[2].id) == listed[2]
    assert store.get("films", "nope") is None
    assert store.get("other", pairs[0].id) is None  # pairs belong to one collection


def test_the_same_pair_twice_is_stored_once_and_a_new_verdict_replaces_the_old(store: PairStore) -> None:
    first = caption("a dog runs", start=0.0, end=2.0)
    assert store.add([first]) == 1
    assert store.add([caption("a  dog\nruns ", start=0.0, end=2.0000001)]) == 0  # same text and span
    liked = feedback_pair("films", "dog", CLIP, V1, 0.0, 10.0, relevant=True)
    assert store.add([liked]) == 1
    disliked = feedback_pair("films", "dog", CLIP, V1, 0.0, 10.0, relevant=False)
    assert disliked.id == liked.id
    assert store.add([disliked]) == 0
    listed = store.list("films").pairs
    assert [p.kind for p in listed] == ["caption", "feedback_negative"]
    assert store.counts("films") == {
        "caption": 1,
        "feedback_positive": 0,
        "feedback_negative": 1,
        "subtitle": 0,
    }
    assert store.list("films", kinds=["feedback_positive"]).pairs == []
    assert [p.id for p in store.list("films", kinds=["feedback_negative"]).pairs] == [liked.id]


def test_pages_follow_each_other_without_gaps_or_repeats_under_every_filter(store: PairStore) -> None:
    pairs = []
    for i in range(23):
        video = V1 if i % 3 else V2
        if i % 4 == 0:
            pairs.append(text_pair("films", video, "subtitle", f"cue {i}", float(i), i + 1.0))
        else:
            pairs.append(caption(f"caption {i}", video, float(i), i + 1.0))
    store.add(pairs)
    store.add([text_pair("other", V1, "caption", "elsewhere")])  # another collection's: never listed here

    def read_all(**filters: object) -> list[str]:
        seen, after = [], 0
        while True:
            page = store.list("films", after=after, limit=4, **filters)  # type: ignore[arg-type]
            assert len(page.pairs) <= 4
            seen += [p.id for p in page.pairs]
            if page.next_after is None:
                return seen
            assert page.pairs, "a page that says more follows holds something"
            after = page.next_after

    def expected(keep: Callable[[TrainingPair], bool]) -> list[str]:
        return [p.id for p in pairs if keep(p)]

    assert read_all() == expected(lambda p: True)
    assert read_all(video_id=V2) == expected(lambda p: p.video_id == V2)
    assert read_all(kinds=["subtitle"]) == expected(lambda p: p.kind == "subtitle")
    assert read_all(kinds=["caption", "subtitle"]) == expected(lambda p: True)
    assert read_all(kinds=["subtitle"], video_id=V1) == expected(
        lambda p: p.kind == "subtitle" and p.video_id == V1
    )
    assert read_all(kinds=[]) == []
    assert [p.id for p in iter_pairs(store, "films", page_size=5)] == expected(lambda p: True)
    assert store.list("films", limit=23).next_after is None


def test_deleting_one_pair_a_video_or_a_collection_removes_exactly_those(store: PairStore) -> None:
    keep = caption("stays", V2)
    one, two = caption("first", V1), caption("second", V1, 1.0, 2.0)
    other = text_pair("other", V1, "caption", "other collection")
    store.add([one, two, keep, other])

    removed = store.delete("films", one.id)
    assert removed is not None and removed.id == one.id and removed.text == "first"
    assert store.delete("films", one.id) is None
    assert store.delete_video("films", V1) == 1
    assert [p.id for p in store.list("films").pairs] == [keep.id]
    assert store.list("films", video_id=V1).pairs == []
    assert store.counts("films")["caption"] == 1

    assert store.delete_collection("films") == 1
    assert store.list("films").pairs == [] and sum(store.counts("films").values()) == 0
    assert [p.id for p in store.list("other").pairs] == [other.id]  # another collection keeps its own
    assert store.add([one]) == 1  # a collection made again starts empty and takes pairs again
    assert [p.id for p in store.list("films").pairs] == [one.id]


def test_pairs_survive_closing_and_reopening_the_store(open_store: Opener) -> None:
    first = open_store()
    pairs = [caption("kept", start=1.0, end=2.0), feedback_pair("films", "q", CLIP, V2, 0, 10, relevant=True)]
    first.add(pairs)
    first.close()
    again = open_store()
    assert [p.id for p in again.list("films").pairs] == [p.id for p in pairs]
    assert again.counts("films")["feedback_positive"] == 1


def test_concurrent_writers_of_the_same_pairs_store_each_once(store: PairStore) -> None:
    pairs = [caption(f"caption {i}", start=float(i), end=i + 1.0) for i in range(50)]
    added: list[int] = []

    def write() -> None:
        added.append(store.add(pairs))

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(added) == 50
    assert len(store.list("films", limit=1000).pairs) == 50
    assert store.counts("films")["caption"] == 50


def test_counts_name_every_kind(store: PairStore) -> None:
    assert store.counts("films") == dict.fromkeys(PAIR_KINDS, 0)


def test_texts_and_windows_break_their_rules_with_the_rule_named() -> None:
    with pytest.raises(InvalidPair, match="empty"):
        caption("   \n ")
    with pytest.raises(InvalidPair, match="over the"):
        caption("x" * (MAX_TEXT_CHARS + 1))
    with pytest.raises(InvalidPair, match="after start_s"):
        caption("t", start=3.0, end=3.0)
    with pytest.raises(InvalidPair, match=">= 0"):
        caption("t", start=-1.0)
    with pytest.raises(InvalidPair, match="finite"):
        caption("t", end=float("inf"))
    with pytest.raises(InvalidPair, match="not before the end of the video"):
        check_window(12.0, None, duration_s=12.0)
    assert check_window(2.0, 30.0, duration_s=12.5) == (2.0, 12.5)  # cut to the video's end
    drafted = PairDraft.checked("caption", " a  cat ", 1, 2, source="test").for_video("films", V1)
    assert (drafted.id, drafted.text, drafted.start_s, drafted.end_s) == (
        caption("a cat", V1, 1, 2).id,
        "a cat",
        1,
        2,
    )
