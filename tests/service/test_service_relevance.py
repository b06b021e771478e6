"""Relevance: scores calibrated per collection version, so a true hit reads clearly above a nonsense query's."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from test_service_tasks import ingest_toy_videos

from service.relevance import BACKGROUND_QUERIES, Calibration, calibration_from


def _search(client: TestClient, query: str, **extra: object) -> list[dict[str, object]]:
    body = {"collection": "films", "query": query, "limit": 5, **extra}
    response = client.post("/search", json=body)
    assert response.status_code == 200, response.text
    return list(response.json()["results"])


def test_calibration_puts_the_nonsense_best_low_and_inverts_exactly() -> None:
    calibration = calibration_from([0.20, 0.22, 0.18], [0.20, 0.22, 0.18, 0.15, 0.12, 0.10])
    assert calibration.relevance(calibration.background_best) < 0.15
    assert calibration.relevance(calibration.center) == pytest.approx(0.5)
    for relevance in (0.1, 0.5, 0.9):
        assert calibration.relevance(calibration.score_at(relevance)) == pytest.approx(relevance)
    assert (calibration.score_at(0), calibration.score_at(1)) == (-math.inf, math.inf)
    flat = calibration_from([0.3, 0.3], [0.3, 0.3])  # nonsense that all embeds alike: no zero spread
    assert flat.scale > 0 and isinstance(flat, Calibration)


def test_a_true_hit_reads_clearly_higher_than_a_nonsense_querys_best_and_min_relevance_cuts_it(
    make_client: Callable[..., TestClient], model_spec: str, tmp_path: Path
) -> None:
    client = make_client(model=model_spec)  # the trained toy CLIP: its scores mean something
    assert client.post("/collections", json={"name": "films"}).status_code == 201
    manifest = ingest_toy_videos(client, "films", tmp_path / "toy", 6)
    captions = [json.loads(line)["caption"] for line in manifest.read_text().splitlines()]

    nonsense = max(float(_search(client, text)[0]["relevance"]) for text in ("zzzz qqqq", "plumbing invoice"))
    hits = [_search(client, caption)[0] for caption in captions]
    true_hits = [float(h["relevance"]) for h in hits]
    assert all(0.0 <= r <= 1.0 for r in true_hits)
    assert nonsense < 0.35, nonsense
    assert sorted(true_hits)[len(true_hits) // 2] > nonsense + 0.3, (true_hits, nonsense)
    assert "zzzz qqqq" in BACKGROUND_QUERIES  # the question the issue asked, answered by calibration

    assert _search(client, "zzzz qqqq", min_relevance=0.5) == []
    best = max(range(len(captions)), key=lambda i: true_hits[i])
    kept = _search(client, captions[best], min_relevance=0.5)
    assert kept and all(float(r["relevance"]) >= 0.5 for r in kept)
    assert kept[0]["clip_id"] == hits[best]["clip_id"]
