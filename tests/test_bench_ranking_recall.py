"""bench/ranking_recall.py's measurement: the recall it reports is the top-10 overlap it claims to be."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from service.scoring import score_candidates

BENCH = Path(__file__).resolve().parents[1] / "bench" / "ranking_recall.py"
TAU = 5.0


@pytest.fixture(scope="module")
def rr() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ranking_recall", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["ranking_recall"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny(rr: ModuleType) -> tuple[object, dict[str, dict[str, np.ndarray]]]:
    corpus = rr.Corpus.from_points(list(rr.synthetic_points(300, 16)))
    return corpus, rr.synthetic_queries(corpus, 12)


def test_recall_compares_top_10_sets_not_orders(rr: ModuleType) -> None:
    want = [f"c{i}" for i in range(10)]
    assert rr.recall_at_k(list(reversed(want)), want) == 1.0
    assert rr.recall_at_k([*want[:7], "x", "y", "z"], want) == 0.7
    assert rr.recall_at_k([*want, "extra"], want) == 1.0  # only the first 10 of each side count
    assert rr.recall_at_k(["x", *want], want) == 0.9
    assert rr.recall_at_k(["a", "b"], ["b", "a"]) == 1.0  # a collection of fewer than 10 clips


def test_exhaustive_top_is_the_scoring_functions_order_over_every_clip(rr: ModuleType, tiny: tuple) -> None:
    corpus, queries = tiny
    for text in queries["moment"].values():
        scores, _ = score_candidates(text, corpus.frames, corpus.mask, TAU)
        expected = [corpus.ids[i] for i in np.argsort(-scores, kind="stable")[:10]]
        assert rr.exhaustive_top(text, corpus, TAU) == expected
        assert rr.exhaustive_top(text, corpus, TAU, chunk=7) == expected  # chunking changes nothing


@pytest.fixture
def store(rr: ModuleType, tiny: tuple, tmp_path: Path) -> Iterator[object]:
    """The tiny corpus in a real Edge store, closed after the test."""
    store = rr.load_store("edge", tmp_path, tiny[0])
    yield store
    store.close()


def test_candidates_covering_every_clip_give_recall_exactly_one(
    rr: ModuleType, tiny: tuple, store: object
) -> None:
    corpus, queries = tiny
    for kind, qs in queries.items():
        truth = {t: rr.exhaustive_top(v, corpus, TAU) for t, v in qs.items()}
        # 10 x 30 = 300 candidates: the whole collection is re-ranked, so nothing can be missed.
        every = rr.Rule(oversample=30)
        assert rr.measure(store, qs, truth, [every], TAU)[every.name]["recall_at_10"] == 1.0, kind
        floor = rr.Rule(oversample=1, min_candidates=300)  # the floor alone covers it too
        assert rr.measure(store, qs, truth, [floor], TAU)[floor.name]["recall_at_10"] == 1.0, kind
    # And the measurement does see misses: with 10 candidates the mean-pooled top 10 is not the
    # text-conditioned one for every moment query.
    moments = queries["moment"]
    truth = {t: rr.exhaustive_top(v, corpus, TAU) for t, v in moments.items()}
    few = rr.Rule(oversample=1)
    assert rr.measure(store, moments, truth, [few], TAU)[few.name]["recall_at_10"] < 1.0


def test_a_maxsim_rule_whose_prefetch_and_candidates_cover_every_clip_gives_recall_exactly_one(
    rr: ModuleType, tiny: tuple, store: object
) -> None:
    corpus, queries = tiny
    moments = queries["moment"]
    truth = {t: rr.exhaustive_top(v, corpus, TAU) for t, v in moments.items()}
    every = rr.Rule(oversample=1, min_candidates=300, prefetch=300)
    assert rr.measure(store, moments, truth, [every], TAU)[every.name]["recall_at_10"] == 1.0
    # and a prefetch of 10 leaves MaxSim only the pooled top 10 to choose from: what 1x alone finds
    narrow, pooled = rr.Rule(oversample=1, min_candidates=10, prefetch=10), rr.Rule(oversample=1)
    got = rr.measure(store, moments, truth, [narrow, pooled], TAU)
    assert got[narrow.name]["recall_at_10"] == got[pooled.name]["recall_at_10"] < 1.0


def test_rules_are_named_and_sized_like_the_services_stage_one(rr: ModuleType) -> None:
    from videoseek.settings import SearchSettings

    rule = rr.Rule.parse_maxsim("640:40", oversample=4)
    assert (rule.prefetch, rule.min_candidates, rule.candidates) == (640, 40, 40)
    assert rule.name == "4x, >=40 of MaxSim 640"
    assert rr.Rule(oversample=4, min_candidates=160).name == "4x, >=160"
    with pytest.raises(SystemExit, match="PREFETCH:CANDIDATES"):
        rr.Rule.parse_maxsim("640", oversample=4)
    settings = SearchSettings()
    default, pooled_only = rr.default_rules(settings)
    assert (default.prefetch, default.min_candidates) == (
        settings.maxsim_prefetch,
        settings.maxsim_candidates,
    )
    assert (pooled_only.prefetch, pooled_only.min_candidates) == (0, settings.min_candidates)
    off = settings.model_copy(update={"maxsim_prefetch": 0})
    assert rr.default_rules(off) == (pooled_only, pooled_only)
