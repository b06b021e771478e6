"""The search engine against a stand-in store: adapter versions, re-index races and cross-collection batches."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from typing import Any

import numpy as np

from service.batching import QueryEmbedder
from service.scoring import score_candidates
from service.search_engine import CandidateRule, Ranking, SearchEngine, SearchQuery, every_version
from videoseek.settings import SearchSettings
from videoseek.store import CollectionInfo, ScoredClip

DIM = 8


class FakeStore:
    """Collections with a settable adapter version; every hit reports the version its vectors were made with."""

    def __init__(self, versions: dict[str, str | None]) -> None:
        self.versions = dict(versions)
        self.vectors_version = dict(versions)
        self.searched: list[str] = []

    def get_collection(self, name: str) -> CollectionInfo:
        return CollectionInfo(name, name, DIM, self.versions[name], "model", datetime.now(UTC), points=2)

    def search(
        self,
        name: str,
        vector: np.ndarray,
        limit: int,
        flt: Any,
        with_frames: bool,
        exclude: Any,
        prefetch: int | None = None,
    ) -> list[ScoredClip]:
        self.searched.append(name)
        rng = np.random.default_rng(len(self.searched))
        return [
            ScoredClip(
                id=f"{name}-{i}",
                score=0.5,
                video_id=f"{i:016x}",
                clip_index=0,
                start_s=0.0,
                end_s=10.0,
                frame_times=[0.0, 5.0],
                payload={"adapter_version": self.vectors_version[name]},
                frames=rng.standard_normal((2, DIM)).astype(np.float32),
            )
            for i in range(2)
        ]


def make_engine(store: FakeStore, encode: Any) -> SearchEngine:
    embedder = QueryEmbedder(encode, cache_size=0)
    return SearchEngine(
        store,  # type: ignore[arg-type]
        embedder,
        every_version(Ranking(CandidateRule(oversample=2), score_candidates)),
        tau=5.0,
        model_fingerprint=lambda: "model",
    )


def test_a_reindex_during_a_query_is_detected_and_searched_again() -> None:
    asked: list[str | None] = []

    def encode(texts: list[str], versions: list[str | None]) -> np.ndarray:
        asked.extend(versions)
        return np.ones((len(texts), DIM), dtype=np.float32)

    store = FakeStore({"c": "v1"})
    engine = make_engine(store, encode)
    asyncio.run(engine.collection("c"))  # info for v1 is now cached
    store.versions["c"] = store.vectors_version["c"] = "v2"  # the alias switched to a re-indexed version
    outcome = asyncio.run(engine.search(SearchQuery(collection="c", text="a dog", limit=2)))
    assert outcome.adapter_version == "v2"
    assert asked == ["v1", "v2"]
    engine.embedder.close()


def test_concurrent_queries_on_different_collections_share_one_forward_pass() -> None:
    gate = threading.Event()
    batches: list[list[str | None]] = []

    def encode(texts: list[str], versions: list[str | None]) -> np.ndarray:
        gate.wait(10)
        batches.append(list(versions))
        return np.ones((len(texts), DIM), dtype=np.float32)

    store = FakeStore({"plain": None, "pets": "v-pets", "cars": "v-cars"})
    engine = make_engine(store, encode)

    async def scenario() -> None:
        for name in store.versions:
            await engine.collection(name)
        blocker = engine.embedder.submit("warm", None)  # holds the encoder while the others queue up
        for _ in range(500):
            if blocker.running():
                break
            await asyncio.sleep(0.01)
        searches = [
            engine.search(SearchQuery(collection=name, text=f"q {name}", limit=2)) for name in store.versions
        ]
        pending = asyncio.gather(*searches)
        for _ in range(500):
            if engine.embedder.queue_depth >= 3:
                break
            await asyncio.sleep(0.01)
        gate.set()
        outcomes = await pending
        assert blocker.result(5) is not None
        assert [o.adapter_version for o in outcomes] == [None, "v-pets", "v-cars"]

    asyncio.run(scenario())
    assert batches[0] == [None]
    assert sorted(batches[1], key=str) == sorted([None, "v-pets", "v-cars"], key=str)
    engine.embedder.close()


def test_paging_by_video_reaches_videos_behind_one_with_many_better_clips(
    tmp_path: Any, monkeypatch: Any
) -> None:
    # One video's 12 clips all beat the other video's only clip; with candidates capped at 4, page 2 only
    # finds the second video if the store leaves out the videos page 1 showed (not just the re-ranker).
    from service import search_engine
    from videoseek.store import ClipPoint
    from videoseek.store.edge import EdgeClipStore

    monkeypatch.setattr(search_engine, "MAX_CANDIDATES", 4)
    query = np.zeros(DIM, dtype=np.float32)
    query[0] = 1.0

    def point(video: str, index: int, closeness: float) -> ClipPoint:
        vec = np.zeros(DIM, dtype=np.float32)
        vec[0], vec[1 + index % (DIM - 1)] = closeness, np.sqrt(1 - closeness**2)
        start = index * 5.0
        return ClipPoint(video, index, start, start + 10.0, vec, np.stack([vec, vec]), [start, start + 5.0])

    store = EdgeClipStore(tmp_path / "edge")
    store.create_collection("many", DIM, model="model")
    store.upsert(
        "many", [point("a" * 16, i, 0.99 - i * 0.001) for i in range(12)] + [point("b" * 16, 0, 0.5)]
    )
    engine = SearchEngine(
        store,
        QueryEmbedder(lambda texts, versions: np.stack([query] * len(texts)), cache_size=0),
        every_version(Ranking(CandidateRule(oversample=1), score_candidates)),
        tau=5.0,
        model_fingerprint=lambda: "model",
    )  # type: ignore[arg-type]
    try:
        first = asyncio.run(engine.search(SearchQuery("many", "x", limit=1, group_by="video")))
        assert [r.clip.video_id for r in first.results] == ["a" * 16] and first.has_more
        second = asyncio.run(
            engine.search(SearchQuery("many", "x", limit=1, group_by="video", seen=frozenset({"a" * 16})))
        )
        assert [r.clip.video_id for r in second.results] == ["b" * 16]
    finally:
        engine.embedder.close()
        store.close()


class RecordingStore:
    """A real Edge store that records how many candidates (and prefetched clips) each search asked for."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.limits: list[int] = []
        self.prefetches: list[int | None] = []

    def search(self, name: str, vector: np.ndarray, limit: int, *args: Any) -> list[ScoredClip]:
        self.limits.append(limit)
        self.prefetches.append(args[3] if len(args) > 3 else None)  # (flt, with_frames, exclude, prefetch)
        result: list[ScoredClip] = self.inner.search(name, vector, limit, *args)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _blinking_collection(
    tmp_path: Any, adapter_version: str | None = None
) -> tuple[Any, np.ndarray, set[str]]:
    """300 clips where mean pooling and text-conditioned pooling disagree, like the toy world's blinking
    objects: 10 clips show the query's object in 1 frame of 8 (mean-pooled cosine 0.14, exact score ~1),
    100 clips are a little like it in every frame (0.3 either way) and outrank them in stage one."""
    from videoseek.store import ClipPoint
    from videoseek.store.edge import EdgeClipStore

    dim = 16
    eye = np.eye(dim, dtype=np.float32)
    query = 10 * eye[0]

    def mixed(cos: float, j: int) -> np.ndarray:
        return 10 * (cos * eye[0] + np.sqrt(1 - cos**2) * eye[j])

    def point(k: int, frames: np.ndarray) -> ClipPoint:
        return ClipPoint(f"{k:016x}", 0, 0.0, 8.0, frames.mean(axis=0), frames, [float(f) for f in range(8)])

    targets = [point(k, np.stack([10 * eye[0]] + [10 * eye[1 + k % 15]] * 7)) for k in range(10)]
    near = [point(k, np.stack([mixed(0.3, 1 + f + k % 8) for f in range(8)])) for k in range(10, 110)]
    far = [point(k, np.stack([mixed(0.05, 1 + f + k % 8) for f in range(8)])) for k in range(110, 300)]
    store = EdgeClipStore(tmp_path / "edge")
    store.create_collection("blink", dim, model="model", adapter_version=adapter_version)
    store.upsert("blink", targets + near + far)
    return store, query, {p.id for p in targets}


def test_the_pooled_only_candidate_rule_finds_clips_mean_pooling_ranks_far_down(tmp_path: Any) -> None:
    # Regression guard for the floor on candidates without a MaxSim stage (settings.search.min_candidates,
    # what a collection whose frames cannot MaxSim gets): the exhaustive top 10 sits at mean-pooled ranks
    # 101-110, beyond limit x oversample = 40 but within the floor.
    from videoseek.settings import SearchSettings

    settings = SearchSettings()
    inner, query, targets = _blinking_collection(tmp_path)
    store = RecordingStore(inner)

    def top(engine: SearchEngine, limit: int, group_by: str = "clip") -> set[str]:
        outcome = asyncio.run(engine.search(SearchQuery("blink", "x", limit=limit, group_by=group_by)))  # type: ignore[arg-type]
        return {r.clip.id for r in outcome.results}

    def engine(min_candidates: int) -> SearchEngine:
        return SearchEngine(
            store,  # type: ignore[arg-type]
            QueryEmbedder(lambda texts, versions: np.stack([query] * len(texts)), cache_size=0),
            every_version(Ranking(CandidateRule(settings.oversample, min_candidates), score_candidates)),
            tau=settings.pooling_tau,
            model_fingerprint=lambda: "model",
        )

    default, without_floor = engine(settings.min_candidates), engine(0)
    try:
        assert top(default, 10) == targets
        assert store.prefetches[-1] is None
        assert store.limits[-1] == max(10 * settings.oversample, settings.min_candidates)
        assert len(top(default, 1) & targets) == 1  # a one-result page gets the floor too
        assert store.limits[-1] == settings.min_candidates
        assert store.limits[-1] >= 110
        top(default, 100)
        assert store.limits[-1] == max(100 * settings.oversample, settings.min_candidates)
        top(default, 10, "video")  # by video: twice the clips, a video's clips crowd each other out
        assert store.limits[-1] == 2 * max(10 * settings.oversample, settings.min_candidates)
        assert not top(without_floor, 10) & targets  # what limit x oversample alone returned
        assert store.limits[-1] == 10 * settings.oversample
    finally:
        default.embedder.close()
        without_floor.embedder.close()
        inner.close()


def _maxsim_engine(store: Any, query: np.ndarray, prefetch: int, candidates: int) -> SearchEngine:
    from videoseek.settings import SearchSettings

    settings = SearchSettings()
    return SearchEngine(
        store,
        QueryEmbedder(lambda texts, versions: np.stack([query] * len(texts)), cache_size=0),
        every_version(
            Ranking(
                CandidateRule(settings.oversample, settings.min_candidates, prefetch, candidates),
                score_candidates,
            )
        ),
        tau=settings.pooling_tau,
        model_fingerprint=lambda: "model",
    )


def _top(engine: SearchEngine, limit: int, group_by: str = "clip") -> set[str]:
    outcome = asyncio.run(engine.search(SearchQuery("blink", "x", limit=limit, group_by=group_by)))  # type: ignore[arg-type]
    return {r.clip.id for r in outcome.results}


def test_the_default_rule_re_scores_a_pooled_prefetch_by_maxsim_and_re_ranks_only_its_best(
    tmp_path: Any,
) -> None:
    # The exhaustive top 10 sits at mean-pooled ranks 101-110; by MaxSim (their one matching frame) it is the
    # top 10, so the default rule finds it re-ranking only max(limit x oversample, maxsim_candidates) clips.
    from videoseek.settings import SearchSettings

    settings = SearchSettings()
    assert settings.maxsim_prefetch >= 110 and settings.maxsim_candidates < 110
    inner, query, targets = _blinking_collection(tmp_path)
    store = RecordingStore(inner)
    engine = _maxsim_engine(store, query, settings.maxsim_prefetch, settings.maxsim_candidates)
    try:
        assert _top(engine, 10) == targets
        assert store.limits[-1] == max(10 * settings.oversample, settings.maxsim_candidates)
        assert store.prefetches[-1] == settings.maxsim_prefetch
        assert len(_top(engine, 1) & targets) == 1  # a one-result page gets the floor too
        assert store.limits[-1] == settings.maxsim_candidates
        _top(engine, 10, "video")  # by video: twice of each, a video's clips crowd each other out
        assert store.limits[-1] == 2 * max(10 * settings.oversample, settings.maxsim_candidates)
        assert store.prefetches[-1] == 2 * settings.maxsim_prefetch
        _top(engine, 1000)  # a page larger than the prefetch: the prefetch grows to the candidates
        assert store.prefetches[-1] == store.limits[-1] >= 1000 * settings.oversample
    finally:
        engine.embedder.close()
        inner.close()


def test_maxsim_needs_only_as_many_candidates_as_results_but_cannot_see_beyond_its_prefetch(
    tmp_path: Any,
) -> None:
    inner, query, targets = _blinking_collection(tmp_path)
    tight = _maxsim_engine(inner, query, prefetch=110, candidates=10)  # the targets' pooled ranks end at 110
    short = _maxsim_engine(inner, query, prefetch=100, candidates=10)
    try:
        assert _top(tight, 10) == targets
        assert not _top(short, 10) & targets  # re-scoring is bounded by the pooled prefetch's own recall
    finally:
        tight.embedder.close()
        short.embedder.close()
        inner.close()


def test_a_collection_whose_frames_cannot_maxsim_is_searched_with_the_pooled_floor(
    tmp_path: Any, monkeypatch: Any
) -> None:
    import qdrant_edge as qe

    import videoseek.store.edge as edge_module
    from videoseek.settings import SearchSettings

    layout_for_scale = edge_module.edge_config

    def cosine_frames(dim: int) -> qe.EdgeConfig:
        frames = qe.EdgeVectorParams(
            size=dim,
            distance=qe.Distance.Cosine,  # MaxSim over normalised frames: not what the re-ranking weighs
            multivector_config=qe.MultiVectorConfig(qe.MultiVectorComparator.MaxSim),
            hnsw_config=qe.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10_000),
        )
        return qe.EdgeConfig(vectors={"pooled": layout_for_scale(dim).vectors["pooled"], "frames": frames})

    settings = SearchSettings()
    monkeypatch.setattr(edge_module, "edge_config", cosine_frames)
    inner, query, targets = _blinking_collection(tmp_path)
    assert not inner.get_collection("blink").frames_maxsim
    store = RecordingStore(inner)
    engine = _maxsim_engine(store, query, settings.maxsim_prefetch, settings.maxsim_candidates)
    try:
        assert _top(engine, 10) == targets
        assert (store.limits[-1], store.prefetches[-1]) == (settings.min_candidates, None)
    finally:
        engine.embedder.close()
        inner.close()


def _app_engine(tmp_path: Any, store: Any, query: np.ndarray, settings: Any) -> SearchEngine:
    """The engine as the app builds it (``service.main._build_engine``), over ``store``."""
    from types import SimpleNamespace

    from service.main import _build_engine
    from service.metrics import ServiceMetrics
    from videoseek.layout import DataLayout

    model = SimpleNamespace(
        encode=lambda texts, versions: np.stack([query] * len(texts)), loaded_fingerprint=lambda: "model"
    )
    services = SimpleNamespace(
        store=store,
        metrics=ServiceMetrics(),
        settings=settings,
        model=model,
        layout=DataLayout(tmp_path / "d"),
    )
    return _build_engine(services)  # type: ignore[arg-type]


def _assert_ranked_by_mean(engine: SearchEngine, store: Any, targets: set[str]) -> None:
    outcome = asyncio.run(engine.search(SearchQuery("blink", "x", limit=10)))
    assert outcome.pooling == "mean"
    assert len(outcome.results) == 10 and not {r.clip.id for r in outcome.results} & targets
    # a "near" clip's frames are each 0.3 like the query, in 8 other directions: its mean is 0.665 like it
    assert [round(r.score, 3) for r in outcome.results] == [0.665] * 10
    assert store.limits[-1] == 10 * SearchSettings().oversample and store.prefetches[-1] is None


def test_mean_pooling_ranks_as_the_pooled_vectors_do_with_no_maxsim_stage_and_no_floor(tmp_path: Any) -> None:
    # settings.search.pooling "mean", wired as the app wires it: the blinking targets (the query's object in 1
    # frame of 8) stay where mean pooling puts them, far down, and stage one asks for limit x oversample clips.
    from videoseek.settings import Settings

    inner, query, targets = _blinking_collection(tmp_path)
    store = RecordingStore(inner)
    engine = _app_engine(tmp_path, store, query, Settings(search=SearchSettings(pooling="mean")))
    try:
        _assert_ranked_by_mean(engine, store, targets)
    finally:
        engine.embedder.close()
        inner.close()


def test_a_version_is_searched_with_the_pooling_its_retrain_chose(tmp_path: Any) -> None:
    # search.pooling stays text_conditioned; the live version's adapter has a training record whose retrain
    # chose mean: that version ranks by mean, and with adapters.choose_pooling false by the setting again.
    from videoseek.layout import DataLayout
    from videoseek.settings import AdapterSettings, Settings
    from videoseek.versions import write_training_record

    inner, query, targets = _blinking_collection(tmp_path, adapter_version="ad" * 32)
    store = RecordingStore(inner)
    layout = DataLayout(tmp_path / "d")
    layout.adapter_dir("ad" * 32).mkdir(parents=True)
    write_training_record(layout, "ad" * 32, {"outcome": "installed", "serving": {"pooling": "mean"}})
    engine = _app_engine(tmp_path, store, query, Settings())
    told = _app_engine(tmp_path, store, query, Settings(adapters=AdapterSettings(choose_pooling=False)))
    try:
        _assert_ranked_by_mean(engine, store, targets)
        outcome = asyncio.run(told.search(SearchQuery("blink", "x", limit=10)))
        assert outcome.pooling == "text_conditioned" and {r.clip.id for r in outcome.results} == targets
    finally:
        engine.embedder.close()
        told.embedder.close()
        inner.close()
