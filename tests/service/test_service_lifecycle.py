"""The adapter lifecycle over HTTP: pairs in, a retrain with no options, the guard, versions and rollback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from test_service_tasks import ingest_toy_videos, wait_for_task


def _caption_every_video(client: TestClient, manifest: Path) -> list[str]:
    """A caption for each video of "films", from the toy manifest (uploads are listed in upload order)."""
    videos = client.get("/collections/films/videos").json()["videos"]
    by_name = {v["source_name"]: v["video_id"] for v in videos}
    captions = []
    for line in manifest.read_text().splitlines():
        record = json.loads(line)
        captions.append({"video_id": by_name[Path(record["video"]).name], "text": record["caption"]})
    added = client.post("/collections/films/captions", json={"captions": captions})
    assert added.status_code in (200, 201) and added.json()["added"] == len(captions), added.text
    return [c["video_id"] for c in captions]


def _search(client: TestClient, query: str) -> list[tuple[str, float]]:
    body = client.post("/search", json={"collection": "films", "query": query, "limit": 10}).json()
    return [(r["clip_id"], r["score"]) for r in body["results"]]


def _retrain(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    started = client.post("/collections/films/retrain", json=body)
    assert started.status_code == 202, started.text
    final = wait_for_task(client, started.json()["task_id"], timeout_s=300)[-1]
    assert final["state"] == "done", final
    return dict(final["result"])


def test_a_retrain_with_no_options_learns_from_the_pairs_and_keeps_what_serves_when_it_cannot_judge(
    client: TestClient, tmp_path: Path
) -> None:
    assert client.post("/collections", json={"name": "films"}).status_code == 201
    manifest = ingest_toy_videos(client, "films", tmp_path / "toy", 3)
    _caption_every_video(client, manifest)
    hit = client.post("/search", json={"collection": "films", "query": "a red circle"}).json()["results"][0]
    clicked = client.post(
        "/collections/films/feedback",
        json={"query": "a red circle", "clip_id": hit["clip_id"], "relevant": True},
    )
    assert clicked.status_code == 201, clicked.text
    before = client.get("/collections/films").json()

    result = _retrain(client, {})

    assert result["training_pairs"] == {"captions": 3, "feedback": 1, "subtitles": 0}
    assert result["outcome"] == "kept" and "cannot tell" in result["why"], result
    if result["validation"]["pairs"]:  # the same held-out pairs under each pooling search.pooling can take
        assert set(result["validation"]["by_pooling"]) == {"text_conditioned", "mean"}, result
    assert result["training"]["pooling"] == "text_conditioned"  # the search's default
    assert result["reindex"] is None and result["adapter_version"] is None
    assert result["training"]["steps"] >= 1 and result["training"]["candidate_version"]
    after = client.get("/collections/films").json()
    assert (after["adapter_version"], after["clips"]) == (before["adapter_version"], before["clips"])
    assert [v["live"] for v in client.get("/collections/films/versions").json()["versions"]] == [True]


def _pooling(client: TestClient) -> str:
    body = client.post("/search", json={"collection": "films", "query": "a red circle"}).json()
    return str(body["pooling"])


def test_a_forced_retrain_keeps_the_old_version_and_a_rollback_restores_its_results_exactly(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The retrain chooses mean pooling, as for a collection whose dev captions rank better by it (3 videos
    # spare no dev split to choose on: training/guard.py's tests hold the choice itself); the new version is
    # searched with it and the rollback puts back the plain version's text-conditioned pooling with its vectors.
    import training.retrain
    from training.guard import PoolingChoice

    chose_mean = PoolingChoice("mean", True, "mean ranks the dev captions better")
    monkeypatch.setattr(training.retrain, "_choose_pooling", lambda *args: chose_mean)
    assert client.post("/collections", json={"name": "films"}).status_code == 201
    manifest = ingest_toy_videos(client, "films", tmp_path / "toy", 3)
    _caption_every_video(client, manifest)
    plain = client.get("/collections/films/versions").json()["versions"]
    queries = ["a red circle", "a blue square", "a green triangle"]
    served_before = {q: _search(client, q) for q in queries}
    nothing_to_restore = client.post("/collections/films/rollback", json={})
    assert nothing_to_restore.status_code == 409, nothing_to_restore.text
    assert nothing_to_restore.json()["code"] == "no_version_to_restore"

    assert _pooling(client) == "text_conditioned"
    result = _retrain(client, {"force": True, "epochs": 2})
    assert result["outcome"] == "installed" and result["why"].startswith("forced:"), result
    assert result["serving"] == chose_mean.record()
    versions = client.get("/collections/films/versions").json()
    assert [(v["live"], v["adapter_version"], v["pooling"]) for v in versions["versions"]] == [
        (True, result["adapter_version"], "mean"),
        (False, None, "text_conditioned"),
    ]
    assert versions["versions"][0]["metrics"]["serving"]["pooling"] == "mean"
    assert _pooling(client) == "mean"
    assert versions["versions"][0]["metrics"]["training_pairs"] == {
        "captions": 3,
        "feedback": 0,
        "subtitles": 0,
    }
    assert versions["versions"][1]["physical"] == plain[0]["physical"]
    assert {q: _search(client, q) for q in queries} != served_before  # the adapter changed the scores

    started = client.post("/collections/films/rollback", json={})
    assert started.status_code == 202 and started.json()["kind"] == "rollback", started.text
    final = wait_for_task(client, started.json()["task_id"])[-1]
    assert (final["state"], final["kind"]) == ("done", "rollback"), final
    assert client.get("/collections/films").json()["adapter_version"] is None
    assert {q: _search(client, q) for q in queries} == served_before  # to the clip and the score
    assert _pooling(client) == "text_conditioned"
    live_first = client.get("/collections/films/versions").json()["versions"]
    assert [(v["physical"], v["live"]) for v in live_first] == [
        (plain[0]["physical"], True),
        (versions["versions"][0]["physical"], False),
    ]
    unknown = client.post("/collections/films/rollback", json={"version": "vs__films__99"})
    assert unknown.status_code == 409 and "kept" in unknown.json()["reason"], unknown.text


def test_versions_and_rollback_are_documented_with_examples(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    assert {"202", "409"} <= set(paths["/collections/{name}/rollback"]["post"]["responses"])
    assert "200" in paths["/collections/{name}/versions"]["get"]["responses"]
    assert schema["components"]["schemas"]["VersionList"]["example"]["versions"]
    assert {} in schema["components"]["schemas"]["RetrainRequest"]["examples"]
