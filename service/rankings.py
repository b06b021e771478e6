"""Which pooling, and so which stage-one sizes and re-ranking score, each collection version is searched with.

A retrain records the pooling it chose for its adapter (``videoseek/versions.py``: the one that ranked the
collection's dev pairs best), so a collection whose captions favour mean pooling is searched with it, and a
rollback puts the old pooling back with the old vectors. Every other version uses ``settings.search.pooling``.
"""

from __future__ import annotations

from service import scoring
from service.search_engine import CandidateRule, Ranking
from videoseek.layout import DataLayout
from videoseek.pooling_defaults import Pooling
from videoseek.settings import SearchSettings
from videoseek.versions import version_pooling


def pooling_ranking(pooling: Pooling, search: SearchSettings) -> Ranking:
    """The search's ranking under ``pooling``, with ``search``'s candidate knobs."""
    if pooling == "mean":
        # Mean pooling ranks by the very vector the pooled ANN walks: a MaxSim stage or a floor on candidates
        # would only add clips it ranks lower.
        return Ranking(CandidateRule(search.oversample), scoring.score_mean, pooling)
    rule = CandidateRule(
        search.oversample, search.min_candidates, search.maxsim_prefetch, search.maxsim_candidates
    )
    return Ranking(rule, scoring.SCORE_FNS[pooling], pooling)


class VersionRankings:
    """adapter version -> its :class:`Ranking`: its retrain's pooling where one was chosen (and
    ``use_chosen``), else ``search.pooling``. Blocking (reads the version's training record)."""

    def __init__(self, layout: DataLayout, search: SearchSettings, *, use_chosen: bool = True) -> None:
        self.layout = layout
        self.use_chosen = use_chosen
        self._by_pooling = {p: pooling_ranking(p, search) for p in scoring.SCORE_FNS}
        self.default: Pooling = search.pooling

    def __call__(self, adapter_version: str | None) -> Ranking:
        return self._by_pooling[
            version_pooling(self.layout, adapter_version, self.default, use_chosen=self.use_chosen)
        ]
