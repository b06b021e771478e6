"""Clip store benchmark: Qdrant Edge vs qdrant-client local mode, side by side, through the ClipStore API.

    .venv/bin/python bench/store.py [--clips 20000] [--queries 50] [--dim 512] [--frames 12] [--local-mode disk]

Writes N clips (one pooled vector + F frame vectors each, 100 clips per video, user metadata on each) into
each store, then times plain and filtered top-k searches and the frame fetch used for re-ranking. Prints one
JSON object; the ratios (local mode / Edge) are what to compare, absolute numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from synthetic import CLIPS_PER_VIDEO, clustered_clips, unit_rows, video_centers, video_id
from videoseek.store import ClipStore, SearchFilter, point_id
from videoseek.store.edge import EdgeClipStore
from videoseek.store.server import ServerClipStore

TOP_K = 40  # a realistic candidate count: limit x oversample
NAME = "bench"


def all_pooled(n: int, dim: int, frames: int) -> np.ndarray:
    return np.concatenate([np.stack([p.pooled for p in b]) for b in clustered_clips(n, dim, frames)])


def p50_ms(fn: Any, args: list[Any]) -> float:
    times = []
    for a in args:
        t = time.perf_counter()
        fn(a)
        times.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(times), 3)


def run(store: ClipStore, n: int, dim: int, frames: int, queries: np.ndarray, truth: list[set[str]]) -> dict:
    store.create_collection(NAME, dim, model="bench")
    upsert_s = 0.0
    for batch in clustered_clips(n, dim, frames):  # generating the data is not timed
        t = time.perf_counter()
        store.upsert(NAME, batch)
        upsert_s += time.perf_counter() - t
    optimize_s = 0.0
    extra: dict[str, float] = {}
    if isinstance(store, EdgeClipStore):  # Edge optimizes only when asked; the server does it in background
        extra["query_p50_ms_before_optimize"] = p50_ms(lambda q: store.search(NAME, q, TOP_K), list(queries))
        t = time.perf_counter()
        store.optimize(NAME)
        optimize_s = time.perf_counter() - t
    videos = max(1, n // CLIPS_PER_VIDEO)
    filters = [
        SearchFilter(video_ids=[f"{(i * 7919) % videos:016x}"], metadata={"cam": f"c{i % 7}"})
        for i in range(len(queries))
    ]
    plain = p50_ms(lambda q: store.search(NAME, q, TOP_K), list(queries))
    filtered = p50_ms(
        lambda qf: store.search(NAME, qf[0], TOP_K, qf[1]), list(zip(queries, filters, strict=True))
    )
    hits = [store.search(NAME, q, 10) for q in queries]
    recall = statistics.mean(
        len({h.id for h in hs} & want) / 10 for hs, want in zip(hits, truth, strict=True)
    )
    ids = [[h.id for h in store.search(NAME, q, TOP_K)] for q in queries]
    fetch = p50_ms(lambda i: store.get_frames(NAME, i), ids)
    assert store.count(NAME) == n
    return {
        "upsert_s": round(upsert_s, 2),
        "optimize_s": round(optimize_s, 2),
        "write_total_s": round(upsert_s + optimize_s, 2),
        "query_p50_ms": plain,
        "filtered_query_p50_ms": filtered,
        f"get_frames_{TOP_K}_p50_ms": fetch,
        "recall_at_10": round(recall, 4),
        **extra,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument(
        "--local-mode",
        choices=["disk", "memory"],
        default="disk",
        help="qdrant-client local mode persisted under a path (like Edge) or in memory",
    )
    args = parser.parse_args()

    # text-like queries: near a video's centre, but not on any stored clip
    centers = video_centers(args.clips, args.dim)
    rng = np.random.default_rng(10**6)
    picks = centers[rng.integers(0, len(centers), args.queries)]
    queries = unit_rows(rng, (args.queries, args.dim)) + picks
    pooled = all_pooled(args.clips, args.dim, args.frames)
    pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
    top = np.argsort(-(queries @ pooled.T), axis=1)[:, :10]
    truth = [{point_id(video_id(k), k % CLIPS_PER_VIDEO) for k in row} for row in top]
    del pooled

    result: dict[str, Any] = {"clips": args.clips, "frames_per_clip": args.frames, "dim": args.dim}
    with tempfile.TemporaryDirectory() as tmp:
        edge = EdgeClipStore(Path(tmp) / "edge", optimize_every=10**12)
        try:
            result["edge"] = run(edge, args.clips, args.dim, args.frames, queries, truth)
        finally:
            edge.close()
    with tempfile.TemporaryDirectory() as tmp:
        local = ServerClipStore.local(Path(tmp) / "local" if args.local_mode == "disk" else None)
        try:
            result[f"qdrant_client_local_{args.local_mode}"] = run(
                local, args.clips, args.dim, args.frames, queries, truth
            )
        finally:
            local.close()
    e, q = result["edge"], result[f"qdrant_client_local_{args.local_mode}"]
    result["ratios_local_over_edge"] = {
        key: round(q[key] / e[key], 1) if e[key] else None
        for key in ("write_total_s", "query_p50_ms", "filtered_query_p50_ms", f"get_frames_{TOP_K}_p50_ms")
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
