"""Scale benchmark: what one embedded store (Qdrant Edge) costs per clip, from 20k clips to a million.

    .venv/bin/python bench/scale.py [--clips 20000 200000] [--quick] [--layout scale|combined|legacy] [--queries 100]
        [--optimize-every 20000]

Each size runs in a fresh subprocess (so its RSS is that store's alone): N clips from ``bench/synthetic.py``
(clustered like real clips, 12 frame vectors of 512-d each) are upserted into an empty store, optimized every
``--optimize-every`` clips (the embedded store's own cadence, its ``optimize_every``: until an optimize, written
clips sit in RAM at full precision) and once more at the end, then queried. Prints one JSON line
``{"runs": [...]}``, one entry per size:

* ``rss_bytes_per_clip``: growth of the process's resident memory from before the store was opened to after
  the optimize, per clip (``rss_anon_bytes_per_clip``: its anonymous part, heap the engine holds;
  ``rss_after_queries_bytes_per_clip``: after the queries, which map pages of the on-disk files in too; the
  kernel drops those first under memory pressure);
* ``disk_bytes_per_clip``: the store directory's allocated blocks, per clip;
* ``upsert_s``, ``optimize_s``: wall time of the writes (in batches of 500) and of all ``optimizes``;
  ``peak_rss_bytes``: the process's peak resident memory (``VmHWM``);
* ``query_p50_ms`` / ``query_p95_ms``: top-40 searches (``ClipStore.search``: int8 HNSW walk, rescored);
  ``filtered_query_p50_ms``: the same with one video and one metadata value as the filter;
* ``recall_at_10``: the top 10 against exact (brute-force, float64 cosine) search over all pooled vectors;
* ``get_frames_40_p50_ms``: reading the frame vectors of a query's 40 candidates (what re-ranking reads);
* ``maxsim_query_p50_ms``: the store search ``/search`` makes by default (``search.maxsim_prefetch`` pooled
  candidates re-scored by MaxSim over their frames, the best ``search.maxsim_candidates`` kept); the service
  then reads the kept ones' frames through its cache, which on a miss costs about ``get_frames_40_p50_ms``;
* ``query_p50_vs_reference`` (sizes above ``--reference-clips``, 20k): after the rest, a store of the reference
  size is built beside this one and the same queries alternate between the two (``alternating_query_p50_ms``,
  ``reference_query_p50_ms``): the ratio the target is about, with both stores under the same load.

``--layout combined`` builds issue 17's first layout (float16 frames on disk, but in the shard the query walks),
``--layout legacy`` the one stores had before issue 17 (float32 vectors held in RAM), to compare.
Targets at 1,000,000 clips: RSS <= 3 KiB and disk <= 16 KiB per clip, query p50 <= 1.5x the p50 at 20k,
recall@10 >= 0.95, upsert + optimize <= 30 min.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from synthetic import CLIPS_PER_VIDEO, clustered_clips, unit_rows, video_centers, video_id
from videoseek.store import SearchFilter

TOP_K = 40  # what the service asks the store for: limit x oversample
RECALL_K = 10
NAME = "bench"
QUICK_CLIPS = [2_000, 20_000]
DEFAULT_CLIPS = [20_000, 200_000]
REFERENCE_CLIPS = 20_000  # the p50 target is a ratio to this size's
# --layout -> the function of videoseek.store.edge_layout that lays out the stores' new shards (``shard_config``)
LAYOUTS = {"scale": "edge_config", "combined": "combined_edge_config", "legacy": "legacy_edge_config"}


def recall_at_k(found: Sequence[Sequence[str]], truth: Sequence[set[str]], k: int = RECALL_K) -> float:
    """Mean over queries of the share of the exact top ``k`` among the first ``k`` found."""
    if len(found) != len(truth):
        raise ValueError(f"{len(found)} result lists for {len(truth)} queries")
    return statistics.mean(len(set(list(ids)[:k]) & want) / k for ids, want in zip(found, truth, strict=True))


class ExactTopK:
    """Exact cosine top ``k`` of each query over rows seen batch by batch (never all rows in memory)."""

    def __init__(self, queries: np.ndarray, k: int = RECALL_K) -> None:
        q = np.asarray(queries, dtype=np.float64)
        self._queries = q / np.linalg.norm(q, axis=1, keepdims=True)
        self._k = k
        self._scores = np.full((len(q), 0), -np.inf)
        self._ids = np.empty((len(q), 0), dtype=object)

    def add(self, vectors: np.ndarray, ids: Sequence[str]) -> None:
        v = np.asarray(vectors, dtype=np.float64)
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
        scores = np.concatenate([self._scores, self._queries @ v.T], axis=1)
        batch_ids = np.empty(len(v), dtype=object)
        batch_ids[:] = list(ids)
        every = np.concatenate([self._ids, np.broadcast_to(batch_ids, (len(scores), len(v)))], axis=1)
        keep = np.argsort(-scores, axis=1, kind="stable")[:, : self._k]
        self._scores = np.take_along_axis(scores, keep, axis=1)
        self._ids = np.take_along_axis(every, keep, axis=1)

    def truth(self) -> list[set[str]]:
        return [set(row) for row in self._ids.tolist()]


def memory() -> dict[str, int]:
    """This process's resident memory in bytes: total, anonymous, file-backed and its peak so far (``/proc``)."""
    wanted = {"VmRSS": "rss", "RssAnon": "anon", "RssFile": "file", "VmHWM": "peak"}
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in wanted:
            out[wanted[key]] = int(value.split()[0]) * 1024
    return out


def disk_bytes(root: Path) -> int:
    return sum(f.stat().st_blocks * 512 for f in root.rglob("*") if f.is_file())


def _timed_ms(fn: Any, args: Sequence[Any]) -> list[float]:
    times = []
    for a in args:
        t = time.perf_counter()
        fn(a)
        times.append((time.perf_counter() - t) * 1000)
    return times


def _p(times: list[float], q: float) -> float:
    return round(float(np.percentile(times, q)), 3)


def queries_for(clips: int, dim: int, count: int) -> np.ndarray:
    """Text-like queries: near a video's centre, but on no stored clip (as in ``bench/store.py``)."""
    centers = video_centers(clips, dim)
    rng = np.random.default_rng(10**6)
    picks = centers[rng.integers(0, len(centers), count)]
    return unit_rows(rng, (count, dim)) + picks


def product_maxsim() -> tuple[int, int]:
    """What ``/search`` asks the store for by default: (``maxsim_candidates``, ``maxsim_prefetch``)."""
    from videoseek.settings import SearchSettings

    search = SearchSettings()
    return search.maxsim_candidates, search.maxsim_prefetch


def product_optimize_every() -> int:
    """How many written clips the embedded store lets pile up before it optimizes (its constructor's default)."""
    from videoseek.store.edge import EdgeClipStore

    return int(inspect.signature(EdgeClipStore).parameters["optimize_every"].default)


def measure(
    clips: int,
    *,
    dim: int,
    frames: int,
    queries: int,
    layout: str,
    root: Path,
    optimize_every: int,
    reference_clips: int = 0,
) -> dict[str, Any]:
    """One size in this process: build (optimizing every ``optimize_every`` clips, as the store does), optimize,
    query; the numbers of one ``runs`` entry."""
    import videoseek.store.edge as edge
    import videoseek.store.edge_layout as layouts

    shard_config = getattr(layouts, LAYOUTS[layout])
    qs = queries_for(clips, dim, queries)
    exact = ExactTopK(qs)
    before = memory()
    # write_clips optimizes, timed apart from the writes
    store = edge.EdgeClipStore(root, optimize_every=10**12, shard_config=shard_config)
    try:
        written = write_clips(store, clips, dim, frames, optimize_every, exact)
        optimized = memory()
        videos = max(1, -(-clips // CLIPS_PER_VIDEO))
        filters = [
            SearchFilter(
                video_ids=[video_id((i * 7919) % videos * CLIPS_PER_VIDEO)], metadata={"cam": f"c{i % 7}"}
            )
            for i in range(queries)
        ]
        plain = _timed_ms(lambda q: store.search(NAME, q, TOP_K), list(qs))
        filtered = _timed_ms(
            lambda qf: store.search(NAME, qf[0], TOP_K, qf[1]), list(zip(qs, filters, strict=True))
        )
        found = [[h.id for h in store.search(NAME, q, RECALL_K)] for q in qs]
        candidates = [[h.id for h in store.search(NAME, q, TOP_K)] for q in qs]
        fetch = _timed_ms(lambda ids: store.get_frames(NAME, ids), candidates)
        kept, prefetch = product_maxsim()
        maxsim = _timed_ms(lambda q: store.search(NAME, q, kept, prefetch=prefetch), list(qs))
        queried = memory()
        count = store.count(NAME)
        disk = disk_bytes(root)
        beside = {}
        # after every reading above, so the reference store is in none of them
        if 0 < reference_clips < clips:
            beside = beside_reference(
                store,
                qs,
                reference_clips,
                dim=dim,
                frames=frames,
                optimize_every=optimize_every,
                root=root / "reference",
                shard_config=shard_config,
            )
    finally:
        store.close()
    if count != clips:
        raise RuntimeError(f"the store holds {count} clips, {clips} were written")
    return {
        "clips": clips,
        "layout": layout,
        "rss_bytes_per_clip": round((optimized["rss"] - before["rss"]) / clips),
        "rss_anon_bytes_per_clip": round((optimized["anon"] - before["anon"]) / clips),
        "rss_after_queries_bytes_per_clip": round((queried["rss"] - before["rss"]) / clips),
        "disk_bytes_per_clip": round(disk / clips),
        "upsert_s": round(written.upsert_s, 2),
        "optimize_s": round(written.optimize_s, 2),
        "optimizes": written.optimizes,
        "peak_rss_bytes": queried["peak"],  # of the whole process, its baseline included
        "query_p50_ms": _p(plain, 50),
        "query_p95_ms": _p(plain, 95),
        "filtered_query_p50_ms": _p(filtered, 50),
        "recall_at_10": round(recall_at_k(found, exact.truth()), 4),
        "get_frames_40_p50_ms": _p(fetch, 50),
        "maxsim_query_p50_ms": _p(maxsim, 50),
        **beside,
    }


@dataclass
class Written:
    upsert_s: float = 0.0
    optimize_s: float = 0.0
    optimizes: int = 0


def write_clips(
    store: Any, clips: int, dim: int, frames: int, optimize_every: int, exact: ExactTopK | None = None
) -> Written:
    """``clips`` synthetic clips into a new collection of ``store``, optimized after every ``optimize_every``
    written (at batch granularity, as the store itself counts) and once more for the rest; ``exact`` sees every
    pooled vector. Generating the data is not timed."""
    store.create_collection(NAME, dim, model="bench")
    written, pending = Written(), 0

    def optimize() -> None:
        t = time.perf_counter()
        store.optimize(NAME)
        written.optimize_s += time.perf_counter() - t
        written.optimizes += 1

    for batch in clustered_clips(clips, dim, frames):
        t = time.perf_counter()
        store.upsert(NAME, batch)
        written.upsert_s += time.perf_counter() - t
        if exact is not None:
            exact.add(np.stack([p.pooled for p in batch]), [p.id for p in batch])
        pending += len(batch)
        if pending >= optimize_every:
            optimize()
            pending = 0
    if pending:
        optimize()
    return written


def beside_reference(
    store: Any,
    qs: np.ndarray,
    reference_clips: int,
    *,
    dim: int,
    frames: int,
    optimize_every: int,
    root: Path,
    shard_config: Any = None,
) -> dict[str, Any]:
    """The query p50 of ``store`` (on its queries ``qs``) and of the store a ``reference_clips`` run builds (on
    the queries that run makes), timed alternately, each store first in every other pair.

    The 1M target is a ratio to the p50 at 20k; measured in separate runs, minutes apart, it compares whatever
    else the machine was doing then. Alternating the two stores' queries puts both under the same load."""
    import videoseek.store.edge as edge

    reference = edge.EdgeClipStore(root, optimize_every=10**12, shard_config=shard_config)
    try:
        write_clips(reference, reference_clips, dim, frames, optimize_every)
        own = queries_for(reference_clips, dim, len(qs))  # near its own videos, as in the 20k run
        for q in own:  # warm, as the queries before warmed ``store``
            reference.search(NAME, q, TOP_K)
        big: list[float] = []
        small: list[float] = []
        for i, (q, r) in enumerate(zip(qs, own, strict=True)):
            pair = [(big, store, q), (small, reference, r)]
            for times, which, v in pair if i % 2 == 0 else reversed(pair):  # neither always goes first
                times += _timed_ms(lambda x, which=which: which.search(NAME, x, TOP_K), [v])
    finally:
        reference.close()
    return {
        "reference_clips": reference_clips,
        "alternating_query_p50_ms": _p(big, 50),
        "reference_query_p50_ms": _p(small, 50),
        "query_p50_vs_reference": round(_p(big, 50) / _p(small, 50), 3),
    }


def run_child(clips: int, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--child",
        str(clips),
        "--dim",
        str(args.dim),
        "--frames",
        str(args.frames),
        "--queries",
        str(args.queries),
        "--layout",
        args.layout,
        "--optimize-every",
        str(args.optimize_every),
        "--reference-clips",
        str(args.reference_clips),
    ]
    done = subprocess.run(command, check=True, capture_output=True, text=True, env=os.environ.copy())
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--clips", type=int, nargs="+", default=DEFAULT_CLIPS)
    parser.add_argument("--quick", action="store_true", help=f"sizes {QUICK_CLIPS} instead of --clips")
    parser.add_argument("--layout", choices=sorted(LAYOUTS), default="scale")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument(
        "--optimize-every", type=int, default=product_optimize_every(), help="clips written between optimizes"
    )
    parser.add_argument(
        "--reference-clips",
        type=int,
        default=REFERENCE_CLIPS,
        help="a larger size's queries alternate with this one's",
    )
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.optimize_every < 1 or args.reference_clips < 0:
        parser.error("--optimize-every must be at least 1 and --reference-clips at least 0 (0: no reference)")
    if args.child is not None:
        with tempfile.TemporaryDirectory(prefix="videoseek-scale-") as tmp:
            run = measure(
                args.child,
                dim=args.dim,
                frames=args.frames,
                queries=args.queries,
                layout=args.layout,
                root=Path(tmp),
                optimize_every=args.optimize_every,
                reference_clips=args.reference_clips,
            )
        print(json.dumps(run))
        return
    runs = []
    for clips in QUICK_CLIPS if args.quick else args.clips:
        runs.append(run_child(clips, args))
        # progress: a long run's sizes as they finish
        print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    print(json.dumps({"runs": runs}))


if __name__ == "__main__":
    main()
