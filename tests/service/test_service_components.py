"""Pieces of the service that need no model or store: batching, cursors, ranges, auth, sniffing."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from pydantic import SecretStr

from service.auth import KeyRing, MediaSigner
from service.batching import MicroBatcher, QueryEmbedder, normalise_query
from service.errors import BadRequest, Conflict, Forbidden, RangeNotSatisfiable, Unauthorized
from service.media_sniff import not_a_video
from service.pagination import CursorCodec, CursorState
from service.ranges import parse_range
from videoseek.settings import ApiKey


def test_concurrent_submissions_share_one_forward_pass() -> None:
    gate = threading.Event()
    batches: list[list[int]] = []

    def fn(items: list[int]) -> list[int]:
        gate.wait(5)
        batches.append(list(items))
        return [i * 10 for i in items]

    batcher: MicroBatcher[int, int] = MicroBatcher(fn, max_batch=64)
    first = batcher.submit(0)  # occupies the worker until the gate opens
    time.sleep(0.05)
    rest = [batcher.submit(i) for i in range(1, 9)]
    gate.set()
    assert first.result(5) == 0
    assert [f.result(5) for f in rest] == [i * 10 for i in range(1, 9)]
    assert batches == [[0], list(range(1, 9))]
    batcher.close()


def test_a_failing_batch_fails_every_waiter_and_the_batcher_keeps_working() -> None:
    calls = []

    def fn(items: list[str]) -> list[str]:
        calls.append(items)
        if "boom" in items:
            raise ValueError("bad input")
        return [s.upper() for s in items]

    batcher: MicroBatcher[str, str] = MicroBatcher(fn)
    with pytest.raises(ValueError, match="bad input"):
        batcher.submit("boom").result(5)
    assert batcher.submit("ok").result(5) == "OK"
    batcher.close()


def test_query_cache_is_keyed_by_adapter_version_and_normalised_text() -> None:
    seen: list[tuple[str, str | None]] = []

    def encode(texts: list[str], versions: list[str | None]) -> np.ndarray:
        seen.extend(zip(texts, versions, strict=True))
        return np.stack(
            [np.full(4, float(len(t)) + (1 if v else 0)) for t, v in zip(texts, versions, strict=True)]
        )

    embedder = QueryEmbedder(encode, cache_size=8)
    a = embedder.submit("A red  ball", "v1").result(5)
    b = embedder.submit("a red ball ", "v1").result(5)  # same key: cache hit
    c = embedder.submit("a red ball", None).result(5)  # other adapter: encoded again
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert seen == [("a red ball", "v1"), ("a red ball", None)]
    assert (embedder.hits, embedder.misses) == (1, 2)
    assert normalise_query("  Hello\tWorld ") == "hello world"
    embedder.close()


def test_query_cache_evicts_least_recently_used() -> None:
    embedder = QueryEmbedder(lambda texts, _: np.ones((len(texts), 2)), cache_size=2)
    for text in ("a", "b", "a", "c"):  # "b" is the least recently used when "c" arrives
        embedder.submit(text, None).result(5)
    assert embedder.cached((None, "a")) is not None
    assert embedder.cached((None, "b")) is None
    assert embedder.cached((None, "c")) is not None
    embedder.close()


def test_cursor_roundtrip_and_rejections() -> None:
    codec = CursorCodec(b"k" * 32)
    token = codec.encode(CursorState("fp", "v1", ["x", "y"]))
    assert codec.decode(token, "fp", "v1").seen == ["x", "y"]
    with pytest.raises(BadRequest, match="different query"):
        codec.decode(token, "other", "v1")
    with pytest.raises(Conflict):
        codec.decode(token, "fp", "v2")
    tampered = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    for bad in (tampered, "%%%", "", "abc"):
        with pytest.raises(BadRequest):
            codec.decode(bad, "fp", "v1")
    with pytest.raises(BadRequest):  # signed by another server
        CursorCodec(b"z" * 32).decode(token, "fp", "v1")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-99", (0, 99)),
        ("bytes=10-", (10, 999)),
        ("bytes=-100", (900, 999)),
        ("bytes=900-5000", (900, 999)),
        ("bytes=-5000", (0, 999)),
        ("items=0-5", None),
        ("bytes=0-1,5-6", None),
    ],
)
def test_range_parsing(header: str | None, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, 1000) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-" + "9" * 5000, (0, 999)),  # int() refuses strings of over 4300 digits
        ("bytes=-" + "9" * 5000, (0, 999)),
        ("bytes=" + "0" * 5000 + "7-8", (7, 8)),
    ],
)
def test_absurdly_long_positions_mean_past_the_end(header: str, expected: tuple[int, int]) -> None:
    assert parse_range(header, 1000) == expected


@pytest.mark.parametrize(
    "header",
    [
        "bytes=1000-",
        "bytes=5-3",
        "bytes=-0",
        "bytes=abc",
        "bytes=-",
        "bytes=",
        "bytes=" + "9" * 5000 + "-",
        "bytes=\u00b2-",  # "2".isdigit() is True, int() refuses it: headers are latin-1, where it lives
        "bytes=\uff11-",  # a fullwidth 1: int() takes it, HTTP does not
        "bytes=1\u00a0-2",  # a no-break space is no HTTP whitespace
    ],
)
def test_bad_ranges_are_unsatisfiable(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable) as info:
        parse_range(header, 1000)
    assert info.value.headers["Content-Range"] == "bytes */1000"


def test_keyring_scopes_collections_and_open_mode() -> None:
    keys = KeyRing(
        [
            ApiKey(key=SecretStr("s3arch"), scopes=["search"], collections=["pets"]),
            ApiKey(key=SecretStr("adm1n"), scopes=["admin"]),
        ],
        open_policy="loopback",
    )
    with pytest.raises(Unauthorized):
        keys.authenticate(None, "127.0.0.1")
    with pytest.raises(Unauthorized):
        keys.authenticate("wrong", "127.0.0.1")
    searcher = keys.authenticate("s3arch", "10.0.0.5")
    with pytest.raises(Forbidden):
        keys.authorize(searcher, "ingest")
    assert searcher.may_access("pets") and not searcher.may_access("cars")
    admin = keys.authorize(keys.authenticate("adm1n", "10.0.0.5"), "ingest")  # admin implies the rest
    assert admin.may_access("cars")
    open_ring = KeyRing([], open_policy="loopback")
    assert open_ring.authenticate(None, "127.0.0.1").has_scope("admin")
    assert open_ring.authenticate(None, "::1").has_scope("search")
    with pytest.raises(Forbidden, match="VIDEOSEEK_API_KEYS"):
        open_ring.authenticate(None, "192.168.1.20")


def test_media_signatures_bind_path_and_expiry() -> None:
    signer = MediaSigner(b"s" * 32)
    query = dict(part.split("=") for part in signer.sign("/collections/a/videos/ab/file").split("&"))
    assert signer.verify("/collections/a/videos/ab/file", query["exp"], query["sig"])
    assert not signer.verify("/collections/b/videos/ab/file", query["exp"], query["sig"])
    assert not signer.verify("/collections/a/videos/ab/file", str(int(query["exp"]) + 3600), query["sig"])
    expired = dict(part.split("=") for part in signer.sign("/p", now=0).split("&"))
    assert not signer.verify("/p", expired["exp"], expired["sig"])


@pytest.mark.parametrize(
    ("exp", "sig"),
    [
        ("1\u00b3", None),  # a superscript 3 passes str.isdigit() and then int() raises
        ("\uff19" * 10, None),  # fullwidth 9s: int() reads them, sign() never writes them
        ("9" * 5000, None),  # over int()'s 4300 digits
        ("", None),
        (None, "\u00e9" * 32),  # hmac.compare_digest raises on non-ASCII str
        (None, ""),
        (None, "A" * 32),  # sign() writes lowercase hex
        (None, "0" * 33),
    ],
)
def test_a_malformed_media_signature_is_not_valid_and_never_raises(exp: str | None, sig: str | None) -> None:
    signer = MediaSigner(b"s" * 32)
    good = dict(part.split("=") for part in signer.sign("/p").split("&"))
    assert signer.verify("/p", good["exp"], good["sig"])
    assert not signer.verify("/p", good["exp"] if exp is None else exp, good["sig"] if sig is None else sig)


@pytest.mark.parametrize(
    ("head", "verdict"),
    [
        (b"", "an empty file"),
        (b"\x89PNG\r\n\x1a\n" + bytes(100), "a PNG image"),
        (b"hello, this is not a video\n", "a text file"),
        (b'{"json": true}', "a text file"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", "a WAV audio file"),
        (b"\x00\x00\x00\x20ftypisom" + bytes(64), None),
        (b"\x1a\x45\xdf\xa3" + bytes(64), None),
        (b"RIFF\x00\x00\x00\x00AVI LIST", None),
        (b"GIF89a" + bytes([1, 2, 0, 0xF7]) + bytes(64), None),
        (b"\x00\x00\x00\x01\x67\x64\x00\x0a" + bytes(64), None),  # a raw H.264 stream (SPS first)
        (b"\x00\x00\x00\x01\x40\x01\x0c\x01" + bytes(64), None),  # a raw H.265 stream (VPS first)
    ],
)
def test_sniffing_refuses_only_what_is_clearly_not_video(
    tmp_path: Path, head: bytes, verdict: str | None
) -> None:
    path = tmp_path / "f"
    path.write_bytes(head)
    assert not_a_video(path) == verdict


def test_frame_cache_loads_only_what_it_lacks_and_stays_within_its_bytes() -> None:
    from service.frame_vector_cache import FrameVectorCache

    one = np.zeros((2, 4), dtype=np.float32)  # 32 bytes
    cache = FrameVectorCache(max_bytes=3 * one.nbytes)
    loads: list[list[str]] = []

    def load(ids: list[str]) -> dict[str, np.ndarray]:
        loads.append(ids)
        return {i: one + len(i) for i in ids if i != "gone"}

    first = cache.fetch("vs__c__1", ["a", "bb", "gone"], load)
    assert sorted(first) == ["a", "bb"]
    again = cache.fetch("vs__c__1", ["a", "bb", "ccc"], load)
    assert loads == [["a", "bb", "gone"], ["ccc"]] and float(again["ccc"][0, 0]) == 3.0
    cache.fetch("vs__c__2", ["a"], load)  # another physical version: its own entry
    assert loads[-1] == ["a"]
    assert cache.nbytes <= 3 * one.nbytes
    cache.fetch("vs__c__1", ["a"], load)  # "a" of version 1 was the least recently used: evicted
    assert loads[-1] == ["a"]


def test_two_workers_run_two_batches_at_once() -> None:
    both_in = threading.Barrier(2, timeout=5)

    def fn(items: list[int]) -> list[int]:
        both_in.wait()  # only returns if another batch is in flight at the same time
        return items

    batcher: MicroBatcher[int, int] = MicroBatcher(fn, workers=2)
    first = batcher.submit(1)
    time.sleep(0.05)
    second = batcher.submit(2)
    assert (first.result(5), second.result(5)) == (1, 2)
    batcher.close()


def test_a_full_redis_lane_refuses_with_retry_after_and_a_cancelled_call_keeps_its_thread() -> None:
    import asyncio

    from service.redis_lane import RedisLane, RedisLaneFull

    started, release = threading.Event(), threading.Event()
    lane = RedisLane(wait_s=0.05, threads=1)

    def stuck_on_redis() -> None:
        started.set()
        release.wait(30)

    async def scenario() -> None:
        hung = asyncio.ensure_future(lane.run(stuck_on_redis))
        deadline = time.monotonic() + 30
        while not started.is_set():
            assert time.monotonic() < deadline, "the lane never ran the call"
            await asyncio.sleep(0.01)
        hung.cancel()  # its client gave up; the thread is still blocked
        with pytest.raises(asyncio.CancelledError):
            await hung
        with pytest.raises(RedisLaneFull) as refused:
            await lane.run(lambda: "never runs")
        assert refused.value.status_code == 503 and int(refused.value.headers["Retry-After"]) > 0
        release.set()  # Redis answers: the thread frees up, and the lane serves again
        deadline = time.monotonic() + 30
        while True:  # the freed place is handed back through the event loop: a moment later
            try:
                assert await lane.run(lambda: "served") == "served"
                return
            except RedisLaneFull:
                assert time.monotonic() < deadline, "the lane never freed its thread"

    try:
        asyncio.run(scenario())
    finally:
        release.set()
        lane.close()
