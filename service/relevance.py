"""Relevance a person can read: each result's score mapped to [0, 1] against what unrelated queries score.

A raw cosine score means little on its own: every query returns every clip, and the best hit of "zzzz qqqq"
can score 0.3 in one collection and 0.1 in another, or under another adapter. So each collection version
(its physical version: new vectors, new calibration) is calibrated once, on first search, by running
``BACKGROUND_QUERIES`` (nonsense strings and phrases about nothing a video collection holds) through the
search itself. With ``m`` the mean of their best scores and ``s`` their spread:

    relevance(score) = sigmoid((score - m - 2 s) / s)

so the best hit of a nonsense query reads about 0.12 ("poor"), two spreads above it 0.5, four 0.88. ``s`` is
the larger of the spread of the background queries' best scores and the spread of all their top scores
(the first alone can be tiny when the nonsense queries all embed alike), and never under ``MIN_SCALE``.
The raw ``score`` stays in every result; ``min_relevance`` cuts results below a relevance, which is the same
as a ``min_score`` of :meth:`Calibration.score_at` for that collection version.
"""

from __future__ import annotations

import asyncio
import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from service.search_engine import SearchEngine, SearchQuery
from videoseek.store import CollectionInfo

BACKGROUND_QUERIES = (
    "zzzz qqqq",
    "xq vbn plok",
    "qwerty uiop asdf",
    "jjj kkk lll mmm",
    "blorf snizzle wug",
    "vvvvvvvv",
    "kzx qpw rrt",
    "grommet flange",
    "a tax form",
    "the history of medieval poetry",
    "quantum chromodynamics lecture notes",
    "a spreadsheet of quarterly earnings",
    "the smell of old books",
    "an invoice for plumbing services",
    "the declension of latin nouns",
    "a recipe for sourdough bread",
)
TOP_K = 10  # scores of each background query taken for the spread
MIN_SCALE = 1e-3
CENTER_SPREADS = 2.0  # the nonsense best sits this many spreads below relevance 0.5
CACHED_VERSIONS = 256


@dataclass(frozen=True)
class Calibration:
    """Where relevance 0.5 sits (``center``) and how fast it rises (``scale``), in score units."""

    center: float
    scale: float
    background_best: float  # mean best score of the background queries

    def relevance(self, score: float) -> float:
        z = (score - self.center) / self.scale
        return 1.0 / (1.0 + math.exp(-z)) if z > -60 else 0.0

    def score_at(self, relevance: float) -> float:
        """The score whose relevance is ``relevance`` (0 and 1 map to minus / plus infinity)."""
        if relevance <= 0:
            return -math.inf
        if relevance >= 1:
            return math.inf
        return self.center + self.scale * math.log(relevance / (1.0 - relevance))


def calibration_from(best: list[float], top: list[float]) -> Calibration:
    """The calibration from the background queries' best scores and all their top scores."""
    mean_best = float(np.mean(best))
    scale = max(float(np.std(best)), float(np.std(top)), MIN_SCALE)
    return Calibration(mean_best + CENTER_SPREADS * scale, scale, mean_best)


class RelevanceCalibrator:
    """Calibrations of recently searched collection versions, each computed once (concurrent first searches
    of a version wait for the same run) and again when the version has grown or shrunk by half since: ingest
    adds clips to the live version, and a calibration made on its first few clips would not fit a thousand."""

    def __init__(self) -> None:
        self._known: OrderedDict[str, tuple[int, Calibration]] = OrderedDict()  # key -> (points then, it)
        self._running: dict[str, asyncio.Future[Calibration | None]] = {}

    async def get(self, engine: SearchEngine, info: CollectionInfo) -> Calibration | None:
        """The version's calibration; None while the collection has no clips."""
        key = f"{info.name}/{info.physical}@{info.created_at.isoformat()}"
        known = self._known.get(key)
        if known is not None and known[0] / 2 <= info.points <= known[0] * 2:
            self._known.move_to_end(key)
            return known[1]
        running = self._running.get(key)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[Calibration | None] = asyncio.get_running_loop().create_future()
        self._running[key] = future
        try:
            calibration = await _calibrate(engine, info)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: a failure with no other waiter is not logged as unhandled
            raise
        finally:
            del self._running[key]
        future.set_result(calibration)
        if calibration is not None:
            self._known[key] = (max(1, info.points), calibration)
            while len(self._known) > CACHED_VERSIONS:
                self._known.popitem(last=False)
        return calibration


async def _calibrate(engine: SearchEngine, info: CollectionInfo) -> Calibration | None:
    queries = [SearchQuery(collection=info.name, text=text, limit=TOP_K) for text in BACKGROUND_QUERIES]
    outcomes = await asyncio.gather(*(engine.search(query, info) for query in queries))
    scored = [[r.score for r in outcome.results] for outcome in outcomes if outcome.results]
    if not scored:
        return None
    return calibration_from([scores[0] for scores in scored], [s for scores in scored for s in scores])
