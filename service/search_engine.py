"""Two-stage text-to-clip ranking.

1. Candidates from the store, with their per-frame vectors (:func:`stage_one`):

   * MaxSim (the default, ``search.maxsim_prefetch`` > 0): an ANN search on each clip's ``pooled`` vector
     fetches a prefetch of ``max(maxsim_prefetch, candidates)`` clips, the store re-scores them by MaxSim of the
     query against their ``frames`` (``max_j <t, f_j>``, the best single frame) and returns the best
     ``candidates = max(limit x oversample, maxsim_candidates)``. Only those come back with payload and frames.
   * Pooled only (``maxsim_prefetch`` 0, or a collection whose ``frames`` cannot MaxSim:
     ``CollectionInfo.frames_maxsim``): the pooled ANN's ``candidates = max(limit x oversample,
     min_candidates)``, as before MaxSim re-scoring existed.

   Grouping by video doubles every count (a video's clips crowd each other out); a page that comes up short
   (``min_score``, grouping) asks again with 4x each, up to ``MAX_CANDIDATES`` candidates.
2. Exact re-ranking of those candidates with the version's :class:`Ranking`: the paper's text-conditioned
   pooling (frame weights ``softmax(<t, f_j> / tau)``, pooled video ``sum_j a_j f_j``, score ``cos(t, v)``) by
   default, or mean pooling where the version's retrain chose it or ``settings.search.pooling`` says so
   (``service/rankings.py``; a mean ranking has no MaxSim stage and no floor, since stage one already ranks
   by the mean). The frame the text-conditioned weights favour gives ``best_frame_s``.

Why MaxSim in between: text-conditioned pooling lifts a clip whose frames match the text only for a moment,
which mean pooling ranks far down; the best frame sees it. At 1,200 toy videos the pooled top 160 held 0.956 of
the exhaustive top 10, MaxSim's best 40 of a pooled 640-prefetch more, for fewer hits read back
(``bench/ranking_recall.py``, docs/benchmarks.md "Ranking recall").

The query is always embedded with the adapter version the collection's vectors were made with (read from the
store on every query; a re-index that switches versions mid-query is detected from the hits and retried).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from service.batching import QueryEmbedder
from service.errors import Conflict
from service.frame_vector_cache import FrameVectorCache
from service.metrics import ServiceMetrics
from videoseek.store import ClipStore, CollectionInfo, ScoredClip, SearchFilter

GroupBy = Literal["clip", "video"]
# (text [D], frames [N, F, D], mask [N, F] bool, tau) -> (scores [N] cosine, weights [N, F])
ScoreFn = Callable[[np.ndarray, np.ndarray, np.ndarray, float], tuple[np.ndarray, np.ndarray]]

MAX_CANDIDATES = 4096
MAX_PREFETCH = 16384  # pooled clips one MaxSim stage re-scores, at most (4 growths of the default)
# Collection info is read per query; a short cache keeps the store's count/facet work off the hot path.
INFO_TTL_S = 2.0
ADAPTER_PAYLOAD_KEY = "adapter_version"


@dataclass(frozen=True)
class SearchQuery:
    """One page request, already validated."""

    collection: str
    text: str
    limit: int
    flt: SearchFilter | None = None
    group_by: GroupBy = "clip"
    min_score: float | None = None
    seen: frozenset[str] = frozenset()  # clip ids (group_by clip) or video ids (group_by video) already shown


@dataclass(frozen=True)
class RankedClip:
    """One result: the clip, its exact score and the moment that matched best."""

    clip: ScoredClip
    score: float
    best_frame_s: float


@dataclass
class SearchOutcome:
    results: list[RankedClip]
    adapter_version: str | None
    pooling: str
    has_more: bool
    timings_ms: dict[str, float] = field(default_factory=dict)


def candidate_count(limit: int, oversample: int, min_candidates: int, by_video: bool = False) -> int:
    """How many candidates stage two re-ranks for a page of ``limit``: ``limit x oversample``, at least
    ``min_candidates`` (doubled when grouping by video: a video's clips crowd each other out).

    The floor is what makes the exact re-ranking rank like exhaustive scoring: text-conditioned pooling can
    lift a clip that mean pooling puts far down (a blinking object, a moment of a longer clip), and on the toy
    world's videos 40 pooled candidates kept 0.89 of the exhaustive top 10 (``bench/ranking_recall.py``).
    """
    return max(limit * oversample, min_candidates) * (2 if by_video else 1)


@dataclass(frozen=True)
class StageOne:
    """What stage one asks the store for: ``candidates`` hits, re-scored by MaxSim from a pooled prefetch of
    ``prefetch`` (None: ranked by pooled alone)."""

    candidates: int
    prefetch: int | None

    def grown(self) -> StageOne:
        """The next, deeper ask of a page that came up short: 4x each, within the caps."""
        candidates = min(self.candidates * 4, MAX_CANDIDATES)
        if self.prefetch is None:
            return StageOne(candidates, None)
        return StageOne(candidates, max(min(self.prefetch * 4, MAX_PREFETCH), candidates))


@dataclass(frozen=True)
class CandidateRule:
    """The knobs of stage one (``SearchSettings``): see the module docstring."""

    oversample: int
    min_candidates: int = 0  # floor without MaxSim
    maxsim_prefetch: int = 0  # 0: no MaxSim stage
    maxsim_candidates: int = 0  # floor with MaxSim


@dataclass(frozen=True)
class Ranking:
    """How one collection version is ranked: stage one's sizes, stage two's score and what it is called."""

    rule: CandidateRule
    score_fn: ScoreFn
    pooling: str = "text_conditioned"


def stage_one(rule: CandidateRule, limit: int, by_video: bool = False, maxsim: bool = True) -> StageOne:
    """Stage one's sizes for a page of ``limit``; ``maxsim``: whether the collection's frames can MaxSim."""
    if rule.maxsim_prefetch <= 0 or not maxsim:
        return StageOne(candidate_count(limit, rule.oversample, rule.min_candidates, by_video), None)
    candidates = candidate_count(limit, rule.oversample, rule.maxsim_candidates, by_video)
    prefetch = min(rule.maxsim_prefetch * (2 if by_video else 1), MAX_PREFETCH)
    return StageOne(candidates, max(prefetch, candidates))


def rerank(text: np.ndarray, hits: Sequence[ScoredClip], score_fn: ScoreFn, tau: float) -> list[RankedClip]:
    """Exact scores for ANN hits, best first (ties broken by clip id so pages are deterministic)."""
    usable = [hit for hit in hits if hit.frames is not None and len(hit.frames)]
    if not usable:
        return []
    counts = [len(hit.frames) for hit in usable]  # type: ignore[arg-type]
    frames = np.zeros((len(usable), max(counts), text.shape[-1]), dtype=np.float32)
    mask = np.zeros(frames.shape[:2], dtype=bool)
    for row, (hit, count) in enumerate(zip(usable, counts, strict=True)):
        frames[row, :count] = hit.frames
        mask[row, :count] = True
    scores, weights = score_fn(text, frames, mask, tau)
    best = np.where(mask, weights, -np.inf).argmax(axis=1)
    ranked = [
        RankedClip(clip=hit, score=float(score), best_frame_s=_frame_time(hit, int(frame)))
        for hit, score, frame in zip(usable, scores, best, strict=True)
    ]
    ranked.sort(key=lambda r: (-r.score, r.clip.id))
    return ranked


def _frame_time(hit: ScoredClip, frame: int) -> float:
    return hit.frame_times[frame] if frame < len(hit.frame_times) else hit.start_s


def best_per_video(ranked: Sequence[RankedClip]) -> list[RankedClip]:
    """Keep each video's best clip (input is sorted best first)."""
    seen: set[str] = set()
    out = []
    for result in ranked:
        if result.clip.video_id not in seen:
            seen.add(result.clip.video_id)
            out.append(result)
    return out


def every_version(ranking: Ranking) -> Callable[[str | None], Ranking]:
    """``SearchEngine``'s ``rankings`` for one ranking of every version."""
    return lambda _adapter_version: ranking


class SearchEngine:
    """Embeds the query (cached, micro-batched), runs the ANN stage and re-ranks exactly."""

    def __init__(
        self,
        store: ClipStore,
        embedder: QueryEmbedder,
        rankings: Callable[[str | None], Ranking],
        *,
        tau: float,
        model_fingerprint: Callable[[], str],
        metrics: ServiceMetrics | None = None,
        frames: FrameVectorCache | None = None,
    ) -> None:
        """``rankings``: how the version with a given adapter version ranks (blocking: called off the event
        loop with each read of a collection's info; :func:`every_version` for one ranking of all)."""
        self.store = store
        self.embedder = embedder
        self._rankings = rankings
        self._ranking: dict[str | None, Ranking] = {}
        self.tau = tau
        self._model_fingerprint = model_fingerprint  # blocking: loads the model if needed
        self._fingerprint: str | None = None
        self._infos: dict[str, tuple[float, CollectionInfo]] = {}
        self.metrics = metrics
        self.frames = frames

    def _observe(self, stage: str, started: float, timings: dict[str, float]) -> None:
        elapsed = time.perf_counter() - started
        timings[stage] = round(timings.get(stage, 0.0) + elapsed * 1000, 3)
        if self.metrics is not None:
            self.metrics.search_stage_seconds.labels(stage).observe(elapsed)

    async def collection(self, name: str, *, fresh: bool = False) -> CollectionInfo:
        """The collection's info (model, adapter version), cached for ``INFO_TTL_S``.

        The cache is safe for ranking: a search whose hits carry another adapter version than the one used
        for the query is redone with fresh info (see :meth:`search`).
        """
        now = time.monotonic()
        cached = self._infos.get(name)
        if cached is not None and not fresh and now - cached[0] < INFO_TTL_S:
            return cached[1]
        info, ranking = await asyncio.to_thread(self._read_collection, name)
        if self._fingerprint is None:  # loads the model on first use
            self._fingerprint = await asyncio.to_thread(self._model_fingerprint)
        if info.model != self._fingerprint:
            raise Conflict(
                f"collection {name!r} was indexed with model {info.model!r} but this server runs "
                f"{self._fingerprint!r}: start the server with that model, or re-index the collection"
            )
        self._ranking[info.adapter_version] = ranking
        self._infos[name] = (now, info)
        return info

    def _read_collection(self, name: str) -> tuple[CollectionInfo, Ranking]:
        info = self.store.get_collection(name)
        return info, self._rankings(info.adapter_version)  # re-read with the info: a retrain may record one

    def ranking(self, adapter_version: str | None) -> Ranking:
        """How a version with ``adapter_version`` ranks (looked up by :meth:`collection` already, as a rule)."""
        ranking = self._ranking.get(adapter_version)
        if ranking is None:
            ranking = self._ranking[adapter_version] = self._rankings(adapter_version)
        return ranking

    def forget(self, name: str) -> None:
        """Drop cached info of a collection that was just created or deleted."""
        self._infos.pop(name, None)

    async def embed(self, text: str, adapter_version: str | None) -> np.ndarray:
        """The query embedding (projected, not normalised) under ``adapter_version``."""
        future = self.embedder.submit(text, adapter_version)
        if future.done():
            if self.metrics is not None:
                self.metrics.query_cache.labels("hit").inc()
            return future.result()
        if self.metrics is not None:
            self.metrics.query_cache.labels("miss").inc()
        # shield: a client that goes away must not cancel an encoding other requests may share.
        return await asyncio.shield(asyncio.wrap_future(future))

    def _candidates(
        self,
        query: SearchQuery,
        info: CollectionInfo,
        text: np.ndarray,
        ask: StageOne,
        exclude: Collection[str],
    ) -> list[ScoredClip]:
        """ANN hits with their frame vectors (blocking: one thread hop for both reads)."""
        flt = query.flt
        if query.group_by == "video" and query.seen:  # shown videos must not use up the candidates
            flt = replace(flt or SearchFilter(), exclude_video_ids=tuple(sorted(query.seen)))
        wanted, prefetch = ask.candidates, ask.prefetch
        if self.frames is None:
            return self.store.search(query.collection, text, wanted, flt, True, exclude, prefetch)
        hits = self.store.search(query.collection, text, wanted, flt, False, exclude, prefetch)
        # A deleted and re-created collection may reuse a physical name, never its creation time.
        generation = f"{info.physical}@{info.created_at.isoformat()}"
        frames = self.frames.fetch(
            generation, [hit.id for hit in hits], lambda ids: self.store.get_frames(query.collection, ids)
        )
        for hit in hits:
            hit.frames = frames.get(hit.id)  # a clip deleted in between has none and drops out
        return hits

    async def search(self, query: SearchQuery, info: CollectionInfo | None = None) -> SearchOutcome:
        """One page of results for ``query``; ``info`` saves a store round trip when the caller has it."""
        info = info or await self.collection(query.collection)
        for _ in range(3):
            outcome = await self._search_version(query, info)
            if outcome is not None:
                return outcome
            # The collection switched adapters mid-query (or the cached info was stale): redo it.
            info = await self.collection(query.collection, fresh=True)
        raise Conflict(f"collection {query.collection!r} is being re-indexed right now: retry in a moment")

    async def _search_version(self, query: SearchQuery, info: CollectionInfo) -> SearchOutcome | None:
        timings: dict[str, float] = {}
        started = time.perf_counter()
        text = await self.embed(query.text, info.adapter_version)
        self._observe("embed", started, timings)
        by_video = query.group_by == "video"
        exclude = () if by_video else query.seen
        ranking = self.ranking(info.adapter_version)
        ask = stage_one(ranking.rule, query.limit, by_video, info.frames_maxsim)
        while True:
            started = time.perf_counter()
            hits = await asyncio.to_thread(self._candidates, query, info, text, ask, exclude)
            self._observe("ann", started, timings)
            if any(
                hit.payload.get(ADAPTER_PAYLOAD_KEY, info.adapter_version) != info.adapter_version
                for hit in hits
            ):
                return None
            started = time.perf_counter()
            ranked = rerank(text, hits, ranking.score_fn, self.tau)
            if by_video:
                ranked = [r for r in best_per_video(ranked) if r.clip.video_id not in query.seen]
            before_cut = len(ranked)
            if query.min_score is not None:
                ranked = [r for r in ranked if r.score >= query.min_score]
            # Once candidates fall under min_score, fetching deeper ANN candidates would rarely help.
            below_min = len(ranked) < before_cut
            self._observe("rerank", started, timings)
            exhausted = (
                len(hits) < ask.candidates
            )  # the store had no more clips (a prefetch is never smaller)
            if len(ranked) >= query.limit or exhausted or below_min or ask.candidates >= MAX_CANDIDATES:
                break
            ask = ask.grown()
        more_upstream = not exhausted and not below_min
        return SearchOutcome(
            results=ranked[: query.limit],
            adapter_version=info.adapter_version,
            pooling=ranking.pooling,
            has_more=len(ranked) > query.limit or (more_upstream and len(ranked) >= query.limit),
            timings_ms=timings,
        )
