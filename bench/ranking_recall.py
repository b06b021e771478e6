"""Ranking recall: does the two-stage search return the top 10 that scoring every clip exactly would?

    .venv/bin/python bench/ranking_recall.py [--quick] [--toy-videos 1200] [--clips 10000 100000]
        [--dim 128 512] [--queries 100] [--oversample 1 2 4 8 16] [--maxsim 320:40 640:40 1280:40]
        [--no-local]

The service ranks in two stages (``service/search_engine.py``). Stage one, in the store: an ANN search on
each clip's mean-pooled vector, whose top ``search.maxsim_prefetch`` the store re-scores by MaxSim over the
clips' frame vectors, keeping the best ``max(limit x search.oversample, search.maxsim_candidates)``; or, with
no MaxSim stage (the rule before it, measured beside it), the pooled top ``max(limit x oversample,
search.min_candidates)``. Stage two: the paper's text-conditioned pooling (``service.scoring.score_candidates``)
re-ranks those exactly. Text-conditioned scores are not monotone in the mean-pooled cosine, so a clip the
exhaustive ranking puts in its top 10 can be missing from the candidates. This measures how often, as
``recall@10 = |two-stage top 10 & exhaustive top 10| / 10`` averaged over queries.

* Two-stage: the real :class:`~service.search_engine.SearchEngine` (its candidate rule, its re-ranking)
  over the real store: the embedded Qdrant Edge store, and qdrant-client local mode (the server store's
  code, exact search) where cheap. Only the query encoder is replaced by a lookup of precomputed vectors.
* Exhaustive: ``score_candidates`` on every clip of the collection in numpy, best first, ties by clip id
  (the engine's order), so both sides score with the same function on the same vectors.

Sources:

* ``toy``: toy-CLIP embeddings of real toy videos (``videoseek.toy.generate``, domain B, written as H.264 and
  decoded, planned and embedded with the ingest code: ``sample_frames``, ``plan_clips``, the image tower,
  ``clip_points``); queries are their captions, embedded with the toy CLIP's text tower.
* ``synthetic``: clustered clips from ``bench/synthetic.py`` (frames scaled to norm 10 like projected
  features). Two query kinds: ``video`` (near a video's centre, like ``bench/store.py``) and ``moment`` (near
  one stored frame of one clip: text that describes one moment, where text-conditioned pooling departs most
  from the mean).

Every candidate rule is measured on the same store: the service's defaults, its pooled-only rule
(``maxsim_prefetch`` 0), ``--oversample`` values without a floor (the rule before ``min_candidates``) and
``--maxsim PREFETCH:CANDIDATES`` rules (at the default oversample). qdrant-client local mode runs on the toy set only (it
took minutes to write 10k clips). ``--quick`` (<= 10 minutes on 2 cores): 300 toy videos, synthetic 10k and
100k clips at dim 128, 40 queries per kind, oversample 1, 4 and 16, no extra MaxSim rules. Prints one JSON object: ``recall_at_10``
at the service's defaults (overall, every query counted once; the worst case; per source; per source, size
and store) and, per rule, overall and worst case; ``target_met`` is the default's worst case >= 0.98.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `synthetic`, also when imported by the tests

from service.batching import QueryEmbedder
from service.scoring import score_candidates
from service.search_engine import CandidateRule, Ranking, SearchEngine, SearchQuery, every_version, stage_one
from synthetic import clustered_clips, unit_rows, video_centers
from videoseek.settings import SearchSettings
from videoseek.store import ClipPoint, ClipStore

K = 10
COLLECTION = "recall"
MODEL = "bench-recall"
SYNTH_FRAMES = 8
SYNTH_SCALE = 10.0  # projected features are not unit-norm: the toy CLIP's are ~14, frames in bench/ at 10
MOMENT_NOISE = 1.0  # a moment query is a stored frame's direction plus this much of a random unit vector


# ------------------------------------------------------------------------------------------- the metric


def recall_at_k(got: Sequence[str], want: Sequence[str], k: int = K) -> float:
    """Share of the exhaustive top ``k`` (``want``, best first) that the two-stage top ``k`` contains.

    Sets, not orders: the two sides use the same scores, so an id in both is ranked the same. With fewer
    than ``k`` clips in the collection, the denominator is how many there are.
    """
    wanted = set(want[:k])
    if not wanted:
        return 1.0
    return len(set(got[:k]) & wanted) / len(wanted)


@dataclass
class Corpus:
    """Every clip as the store holds it, plus the same vectors as arrays for the exhaustive reference."""

    ids: list[str]
    frames: np.ndarray  # [N, F, D] float32, zero-padded
    mask: np.ndarray  # [N, F] bool
    points: list[ClipPoint] = field(default_factory=list, repr=False)

    @classmethod
    def from_points(cls, points: Sequence[ClipPoint]) -> Corpus:
        width = max(len(p.frames) for p in points)
        dim = points[0].frames.shape[1]
        frames = np.zeros((len(points), width, dim), dtype=np.float32)
        mask = np.zeros((len(points), width), dtype=bool)
        for row, p in enumerate(points):
            frames[row, : len(p.frames)] = p.frames
            mask[row, : len(p.frames)] = True
        return cls([p.id for p in points], frames, mask, list(points))


def exhaustive_top(text: np.ndarray, corpus: Corpus, tau: float, k: int = K, chunk: int = 8192) -> list[str]:
    """The ``k`` best clips of the whole corpus by the re-ranking score, best first, ties by clip id."""
    scores = np.concatenate(
        [
            score_candidates(text, corpus.frames[a : a + chunk], corpus.mask[a : a + chunk], tau)[0]
            for a in range(0, len(corpus.ids), chunk)
        ]
    )
    # Candidates within reach of the k-th score, then the engine's exact order (-score, id) among them.
    top = np.argpartition(-scores, min(k, len(scores)) - 1)[: min(k, len(scores))]
    cutoff = scores[top].min()
    near = np.flatnonzero(scores >= cutoff)
    ordered = sorted(near.tolist(), key=lambda i: (-float(scores[i]), corpus.ids[i]))
    return [corpus.ids[i] for i in ordered[:k]]


# ------------------------------------------------------------------------------------------- two-stage


@dataclass(frozen=True)
class Rule:
    """Stage one's candidate rule (``service.search_engine.stage_one``): ``max(limit x oversample,
    min_candidates)`` candidates, by pooled alone (``prefetch`` 0) or the best by MaxSim of a pooled prefetch."""

    oversample: int
    min_candidates: int = 0  # the floor on re-ranked candidates (search.maxsim_candidates with a prefetch)
    prefetch: int = 0  # search.maxsim_prefetch; 0: no MaxSim stage

    @property
    def name(self) -> str:
        name = f"{self.oversample}x" + (f", >={self.min_candidates}" if self.min_candidates else "")
        return name + (f" of MaxSim {self.prefetch}" if self.prefetch else "")

    @property
    def candidate_rule(self) -> CandidateRule:
        return CandidateRule(self.oversample, self.min_candidates, self.prefetch, self.min_candidates)

    @property
    def candidates(self) -> int:
        return stage_one(self.candidate_rule, K).candidates

    @classmethod
    def parse_maxsim(cls, text: str, oversample: int) -> Rule:
        """``PREFETCH:CANDIDATES`` (``--maxsim 640:40``)."""
        prefetch, _, candidates = text.partition(":")
        try:
            return cls(oversample, int(candidates), int(prefetch))
        except ValueError:
            raise SystemExit(f"--maxsim {text!r}: expected PREFETCH:CANDIDATES, e.g. 640:40") from None


class TwoStage:
    """The service's search engine over ``store``; ``queries`` maps query text to its precomputed vector."""

    def __init__(self, store: ClipStore, queries: dict[str, np.ndarray], rule: Rule, tau: float) -> None:
        def encode(texts: list[str], _versions: list[str | None]) -> np.ndarray:
            return np.stack([queries[t] for t in texts])

        self.embedder = QueryEmbedder(encode, cache_size=0)
        self.engine = SearchEngine(
            store,
            self.embedder,
            every_version(Ranking(rule.candidate_rule, score_candidates)),
            tau=tau,
            model_fingerprint=lambda: MODEL,
        )

    def top(self, texts: Sequence[str], k: int = K) -> list[list[str]]:
        async def run() -> list[list[str]]:
            out = []
            for text in texts:
                outcome = await self.engine.search(SearchQuery(collection=COLLECTION, text=text, limit=k))
                out.append([r.clip.id for r in outcome.results])
            return out

        return asyncio.run(run())

    def close(self) -> None:
        self.embedder.close()


def load_store(kind: str, root: Path, corpus: Corpus) -> ClipStore:
    """A fresh collection of ``corpus`` in an Edge store (optimized: HNSW built) or qdrant-client local mode."""
    from videoseek.store.edge import EdgeClipStore
    from videoseek.store.server import ServerClipStore

    store: ClipStore
    if kind == "edge":
        store = EdgeClipStore(root / "edge", optimize_every=10**12)
    elif kind == "local":
        store = ServerClipStore.local(root / "local")
    else:
        raise ValueError(f"unknown store {kind!r}")
    store.create_collection(COLLECTION, corpus.frames.shape[2], model=MODEL)
    for start in range(0, len(corpus.points), 1000):
        store.upsert(COLLECTION, corpus.points[start : start + 1000])
    if isinstance(store, EdgeClipStore):
        store.optimize(COLLECTION)
    return store


def measure(
    store: ClipStore,
    queries: dict[str, np.ndarray],
    truth: dict[str, list[str]],
    rules: Sequence[Rule],
    tau: float,
) -> dict[str, dict[str, float]]:
    """Mean and worst recall@10 per candidate rule, and the engine's mean time per query (store + re-rank)."""
    out = {}
    texts = list(queries)
    for rule in rules:
        two = TwoStage(store, queries, rule, tau)
        try:
            started = time.perf_counter()
            tops = two.top(texts)
            elapsed = time.perf_counter() - started
        finally:
            two.close()
        recalls = [recall_at_k(got, truth[t]) for got, t in zip(tops, texts, strict=True)]
        out[rule.name] = {
            "candidates": rule.candidates,
            "maxsim_prefetch": rule.prefetch,
            "recall_at_10": round(statistics.mean(recalls), 4),
            "worst_query": round(min(recalls), 2),
            "queries_below_1": sum(r < 1.0 for r in recalls),
            "mean_ms_per_query": round(elapsed * 1000 / len(texts), 2),
        }
    return out


# ------------------------------------------------------------------------------------------- sources


def toy_source(n_videos: int, seed: int = 16) -> tuple[Corpus, dict[str, np.ndarray]]:
    """Toy videos through the ingest code (decode, clip plan, image tower, store records); captions as queries."""
    import torch

    from videoseek.clip import get_clip
    from videoseek.embedding import preprocess_frames
    from videoseek.ingest.pipeline import clip_points
    from videoseek.model_spec import ModelSpec
    from videoseek.settings import IngestSettings
    from videoseek.toy.generate import generate_videos
    from videoseek.video.clips import plan_clips
    from videoseek.video.decode import sample_frames

    limits = IngestSettings()
    clip = get_clip(ModelSpec.parse("toy"), "cpu")
    points: list[ClipPoint] = []
    captions: list[str] = []
    with tempfile.TemporaryDirectory(prefix="videoseek-recall-toy-") as tmp, torch.inference_mode():
        manifest = generate_videos(Path(tmp), n_videos, seed, domain="B")
        for line in manifest.read_text().splitlines():
            record = json.loads(line)
            sampled = sample_frames(Path(tmp) / record["video"], limits)
            plans = plan_clips(
                sampled.timestamps,
                sampled.duration_s,
                limits.clip_window_s,
                limits.clip_stride_s,
                limits.max_frames_per_clip,
            )
            vectors = clip.model.encode_image(preprocess_frames(clip, sampled.frames)).float().numpy()
            video_id = f"{len(captions):016x}"
            points += clip_points(
                COLLECTION,
                video_id,
                plans,
                sampled.timestamps,
                vectors,
                source=record["video"],
                metadata={},
                adapter_version=None,
            )
            captions.append(record["caption"])
        tokens = clip.tokenize(captions, 32)
        texts = clip.encode_text(tokens).float().numpy()
    return Corpus.from_points(points), {f"q{i} {c}": texts[i] for i, c in enumerate(captions)}


def synthetic_points(n: int, dim: int) -> Iterator[ClipPoint]:
    for batch in clustered_clips(n, dim, SYNTH_FRAMES, batch=1000, scale=SYNTH_SCALE):
        yield from batch


def synthetic_queries(corpus: Corpus, n_queries: int, seed: int = 10**6) -> dict[str, dict[str, np.ndarray]]:
    """``video`` queries near a video's centre; ``moment`` queries near one stored frame (both norm 10)."""
    n, frames, dim = corpus.frames.shape
    rng = np.random.default_rng(seed)
    centers = video_centers(n, dim)
    video = unit_rows(rng, (n_queries, dim)) + centers[rng.integers(0, len(centers), n_queries)]
    picked = corpus.frames[rng.integers(0, n, n_queries), rng.integers(0, frames, n_queries)]
    moment = picked / np.linalg.norm(picked, axis=1, keepdims=True) + MOMENT_NOISE * unit_rows(
        rng, (n_queries, dim)
    )
    out = {}
    for kind, vectors in (("video", video), ("moment", moment)):
        vectors = SYNTH_SCALE * vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        out[kind] = {f"{kind} {i}": v.astype(np.float32) for i, v in enumerate(vectors)}
    return out


# ------------------------------------------------------------------------------------------- the run


def default_rules(settings: SearchSettings) -> tuple[Rule, Rule]:
    """The service's rule as configured, and the pooled-only rule it falls back to (the rule before MaxSim)."""
    pooled_only = Rule(settings.oversample, settings.min_candidates)
    if settings.maxsim_prefetch <= 0:
        return pooled_only, pooled_only
    return Rule(settings.oversample, settings.maxsim_candidates, settings.maxsim_prefetch), pooled_only


def run_case(
    name: str,
    corpus: Corpus,
    query_sets: dict[str, dict[str, np.ndarray]],
    stores: Sequence[str],
    rules: Sequence[Rule],
    tau: float,
) -> list[dict[str, Any]]:
    started = time.perf_counter()
    truths = {
        kind: {t: exhaustive_top(v, corpus, tau) for t, v in queries.items()}
        for kind, queries in query_sets.items()
    }
    exhaustive_s = time.perf_counter() - started
    rows = []
    for kind in stores:
        with tempfile.TemporaryDirectory(prefix="videoseek-recall-") as tmp:
            started = time.perf_counter()
            store = load_store(kind, Path(tmp), corpus)
            build_s = time.perf_counter() - started
            try:
                for query_kind, queries in query_sets.items():
                    by_rule = measure(store, queries, truths[query_kind], rules, tau)
                    rows.append(
                        {
                            "case": name,
                            "store": kind,
                            "queries": query_kind,
                            "n_queries": len(queries),
                            "clips": len(corpus.ids),
                            "dim": int(corpus.frames.shape[2]),
                            "build_s": round(build_s, 1),
                            "exhaustive_s": round(exhaustive_s, 1),
                            "by_rule": by_rule,
                        }
                    )
            finally:
                store.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="the <= 10-minute subset (see above)")
    parser.add_argument("--toy-videos", type=int, default=1200, help="0: no toy source")
    parser.add_argument("--clips", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--dim", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--queries", type=int, default=100, help="per synthetic query kind")
    parser.add_argument(
        "--oversample",
        type=int,
        nargs="*",
        default=[1, 2, 4, 8, 16],
        help="oversample values swept without a floor (the service's own rule is always measured)",
    )
    parser.add_argument(
        "--maxsim",
        nargs="*",
        default=["320:40", "640:40", "1280:40"],
        metavar="PREFETCH:CANDIDATES",
        help="MaxSim rules swept beside the defaults: a pooled prefetch re-scored by MaxSim, its best "
        "CANDIDATES (at least; limit x oversample when more) re-ranked exactly",
    )
    parser.add_argument("--no-local", action="store_true", help="skip qdrant-client local mode")
    args = parser.parse_args()
    if args.quick:
        args.toy_videos, args.clips, args.dim, args.queries = 300, [10_000, 100_000], [128], 40
        args.oversample, args.maxsim = [1, 4, 16], []
    settings = SearchSettings()
    default, pooled_only = default_rules(settings)
    swept = [Rule(o) for o in args.oversample] + [
        Rule.parse_maxsim(m, settings.oversample) for m in args.maxsim
    ]
    rules = [*dict.fromkeys(r for r in swept if r not in (default, pooled_only)), pooled_only, default]
    tau = settings.pooling_tau
    began = time.perf_counter()

    rows: list[dict[str, Any]] = []
    if args.toy_videos:
        corpus, queries = toy_source(args.toy_videos)
        stores = ["edge"] if args.no_local else ["edge", "local"]
        rows += run_case(f"toy/{args.toy_videos} videos", corpus, {"captions": queries}, stores, rules, tau)
    for dim in args.dim:
        for n in args.clips:
            corpus = Corpus.from_points(list(synthetic_points(n, dim)))
            # Local mode searches exactly in Python: 10k clips took minutes to write, so the toy set only.
            query_sets = synthetic_queries(corpus, args.queries)
            rows += run_case(f"synthetic/{n} clips/{dim}d", corpus, query_sets, ["edge"], rules, tau)
            del corpus

    def overall(rule: Rule, pick: Any = lambda r: True) -> float | None:
        chosen = [r for r in rows if pick(r)]
        if not chosen:  # a source left out (--toy-videos 0, or --clips with no sizes)
            return None
        weights = [r["n_queries"] for r in chosen]
        values = [r["by_rule"][rule.name]["recall_at_10"] for r in chosen]
        return round(float(np.average(values, weights=weights)), 4)

    def worst(rule: Rule) -> float | None:
        return min((r["by_rule"][rule.name]["recall_at_10"] for r in rows), default=None)

    by_case = {
        f"{r['case']}/{r['store']}/{r['queries']}": r["by_rule"][default.name]["recall_at_10"] for r in rows
    }
    print(
        json.dumps(
            {
                "benchmark": "ranking_recall",
                "quick": args.quick,
                "oversample": default.oversample,
                "min_candidates": settings.min_candidates,
                "maxsim_prefetch": settings.maxsim_prefetch,
                "maxsim_candidates": settings.maxsim_candidates,
                "default_rule": default.name,
                "candidates_for_limit_10": default.candidates,
                "tau": tau,
                "recall_at_10": {
                    # Every query counts once: the toy set has a query per video, the synthetic sets fewer.
                    "overall": overall(default),
                    "worst_case": min(by_case.values(), default=None),
                    "toy": overall(default, lambda r: r["case"].startswith("toy")),
                    "synthetic": overall(default, lambda r: r["case"].startswith("synthetic")),
                    "by_case": by_case,
                    "overall_by_rule": {rule.name: overall(rule) for rule in rules},
                    "worst_case_by_rule": {rule.name: worst(rule) for rule in rules},
                },
                "target": 0.98,
                "target_met": bool(by_case) and min(by_case.values()) >= 0.98,
                "rows": rows,
                "cpus": os.cpu_count(),
                "load_average_1m": round(os.getloadavg()[0], 2),
                "wall_s": round(time.perf_counter() - began, 1),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
