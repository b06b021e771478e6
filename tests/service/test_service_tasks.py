"""Admin tasks over HTTP: re-index a collection with another adapter, or retrain its adapter; searches follow."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from service_helpers import CAPTIONS, make_adapter, services_of

from videoseek.toy.generate import generate_videos


def wait_for_task(client: TestClient, task_id: str, timeout_s: float = 120.0) -> list[dict[str, Any]]:
    """Every distinct status seen until the task ends (the last one is terminal)."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = client.get(f"/tasks/{task_id}")
        assert response.status_code == 200, response.text
        status = response.json()
        if not seen or status != seen[-1]:
            seen.append(status)
        if status["state"] in ("done", "failed", "cancelled"):
            return seen
        time.sleep(0.05)
    raise AssertionError(f"re-index {task_id} did not finish: {seen[-1]}")


def ingest_toy_videos(client: TestClient, collection: str, out: Path, n: int) -> Path:
    """Generate, upload and index ``n`` toy videos; returns their captions manifest."""
    manifest = generate_videos(out, n, seed=4, domain="A")
    ids = []
    for line in manifest.read_text().splitlines():
        path = out / line.split('"video": "')[1].split('"')[0]
        with path.open("rb") as handle:
            accepted = client.post(f"/collections/{collection}/videos", files={"file": (path.name, handle)})
        assert accepted.status_code == 202, accepted.text
        ids.append(accepted.json()["job_id"])
    for job_id in ids:
        deadline = time.monotonic() + 120
        while (job := client.get(f"/jobs/{job_id}").json())["stage"] not in ("done", "failed"):
            assert time.monotonic() < deadline, job
            time.sleep(0.05)
        assert job["stage"] == "done", job
    return manifest


def films_of_three_toy_videos(client: TestClient, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """Collection "films" with three toy videos indexed: their captions manifest, and the collection."""
    assert client.post("/collections", json={"name": "films"}).status_code == 201
    manifest = ingest_toy_videos(client, "films", tmp_path / "toy", 3)
    return manifest, client.get("/collections/films").json()


def test_reindex_switches_searches_to_the_new_adapter_without_decoding_again(
    client: TestClient, tmp_path: Path
) -> None:
    assert client.post("/collections", json={"name": "films"}).status_code == 201
    ingest_toy_videos(client, "films", tmp_path / "toy", 2)
    before = client.get("/collections/films").json()
    assert before["adapter_version"] is None and before["videos"] == 2
    # The uploaded files are gone: a re-index that decoded video again could not succeed.
    shutil.rmtree(services_of(client).layout.videos_dir("films"))

    started = client.post("/collections/films/reindex", json={"adapter": str(make_adapter(tmp_path / "a"))})
    assert started.status_code == 202, started.text
    accepted = started.json()
    version = accepted["adapter_version"]
    assert version and len(version) == 64 and accepted["status_url"] == f"/tasks/{accepted['task_id']}"

    statuses = wait_for_task(client, accepted["task_id"])
    final = statuses[-1]
    assert final["state"] == "done", final
    assert (final["collection"], final["kind"], final["reason"]) == ("films", "reindex", None)
    assert final["result"]["new_adapter_version"] == version
    assert (final["result"]["videos"], final["result"]["clips"]) == (2, before["clips"])
    assert final["result"]["seconds"] == round(final["result"]["seconds"], 3)  # seconds to the millisecond
    for status in statuses[:-1]:
        assert status["state"] in ("queued", "running")
        assert status["progress"] is None or status["progress"]["videos_done"] <= 2

    after = client.get("/collections/films").json()
    assert (after["adapter_version"], after["clips"], after["videos"]) == (version, before["clips"], 2)
    searched = client.post("/search", json={"collection": "films", "query": "a red circle"})
    assert searched.status_code == 200 and searched.json()["adapter_version"] == version
    assert len(searched.json()["results"]) == min(10, before["clips"])

    # And back to plain CLIP, by asking for it explicitly.
    back = client.post("/collections/films/reindex", json={"adapter": None}).json()
    assert back["adapter_version"] is None
    assert wait_for_task(client, back["task_id"])[-1]["state"] == "done"
    assert client.get("/collections/films").json()["adapter_version"] is None


def test_a_reindex_that_cannot_run_fails_its_task_with_a_reason_and_the_collection_keeps_serving(
    seeded: tuple[TestClient, dict[str, str]],
) -> None:
    client, _ = seeded  # clips written straight into the store: no frame cache to re-embed from
    started = client.post("/collections/shapes/reindex", json={"adapter": None})
    assert started.status_code == 202, started.text
    final = wait_for_task(client, started.json()["task_id"])[-1]
    assert final["state"] == "failed" and "no cached frames" in final["reason"], final
    assert final["result"] is None
    body = client.post("/search", json={"collection": "shapes", "query": CAPTIONS[0]})
    assert body.status_code == 200 and body.json()["results"]


def test_bad_reindex_requests_are_4xx_with_reasons(
    seeded: tuple[TestClient, dict[str, str]], tmp_path: Path
) -> None:
    client, _ = seeded
    cases: list[tuple[str, dict[str, Any], int]] = [
        ("/collections/nothing-here/reindex", {"adapter": None}, 404),
        ("/collections/Bad%20Name/reindex", {"adapter": None}, 422),
        ("/collections/shapes/reindex", {}, 422),  # adapter is required: plain CLIP only when asked for
        ("/collections/shapes/reindex", {"adapter": str(tmp_path / "missing")}, 422),
        ("/collections/shapes/reindex", {"adapter": None, "surprise": 1}, 422),
    ]
    for path, body, status in cases:
        response = client.post(path, json=body)
        assert response.status_code == status, (path, body, response.text)
        assert response.json()["reason"], response.json()
    not_an_adapter = tmp_path / "not-an-adapter"
    not_an_adapter.mkdir()
    response = client.post("/collections/shapes/reindex", json={"adapter": str(not_an_adapter)})
    assert response.status_code == 422 and response.json()["code"] == "invalid_adapter", response.text
    missing = client.get("/tasks/shapes." + "0" * 32)
    assert missing.status_code == 404 and "POST /collections" in missing.json()["reason"]
    for task_id in ("nope", "x" * 500, "Bad.0123", "shapes." + "0" * 31):  # not "<collection>.<32 hex>"
        malformed = client.get(f"/tasks/{task_id}")
        assert malformed.status_code == 422 and "POST /collections" in malformed.json()["reason"]


def test_reindex_is_documented_in_the_openapi_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    start = paths["/collections/{name}/reindex"]["post"]
    assert "202" in start["responses"] and start["summary"]
    assert "202" in paths["/collections/{name}/retrain"]["post"]["responses"]
    assert "404" in paths["/tasks/{task_id}"]["get"]["responses"]
    assert {"202", "404", "409"} <= set(paths["/tasks/{task_id}/cancel"]["post"]["responses"])


def test_retrain_trains_an_adapter_on_captioned_clips_and_switches_the_collection_to_it(
    client: TestClient, tmp_path: Path
) -> None:
    manifest, before = films_of_three_toy_videos(client, tmp_path)
    # Three clips are too few to hold any out: the guard cannot judge, so only a forced retrain installs.
    body = {"data": str(manifest), "epochs": 1, "batch_size": 2, "lr": 1e-3, "force": True}
    started = client.post("/collections/films/retrain", json=body)
    assert started.status_code == 202, started.text
    accepted = started.json()
    assert accepted["kind"] == "retrain" and accepted["adapter_version"] is None  # not known before training

    statuses = wait_for_task(client, accepted["task_id"], timeout_s=300)
    final = statuses[-1]
    assert (final["state"], final["kind"], final["reason"]) == ("done", "retrain", None), final
    stages = [s["progress"]["stage"] for s in statuses if s["progress"]]
    assert "training" in stages and stages.index("training") < len(stages) - 1  # training, then re-indexing
    result = final["result"]
    version = result["adapter_version"]
    assert (result["outcome"], result["why"][:7], result["validation"]["pairs"]) == (
        "installed",
        "forced:",
        0,
    )
    assert version and result["training"]["method"] == "cma" and result["training"]["clips"] == 3
    assert result["training"]["steps"] >= 1 and Path(result["training"]["run_dir"], "report.json").is_file()
    assert (result["reindex"]["new_adapter_version"], result["reindex"]["clips"]) == (
        version,
        before["clips"],
    )
    after = client.get("/collections/films").json()
    assert (after["adapter_version"], after["clips"]) == (version, before["clips"])
    assert (services_of(client).layout.adapter_dir(version) / "adapter_config.json").is_file()
    searched = client.post("/search", json={"collection": "films", "query": "a blue square"}).json()
    assert searched["adapter_version"] == version and searched["results"]

    # Refining it on (new) captions: the current adapter's method wins over the request's.
    more = client.post("/collections/films/retrain", json={**body, "method": "text", "from_current": True})
    assert more.status_code == 202, more.text
    final = wait_for_task(client, more.json()["task_id"], timeout_s=300)[-1]
    assert final["state"] == "done", final
    assert (final["result"]["training"]["method"], final["result"]["training"]["continued_from"]) == (
        "cma",
        version,
    )
    assert client.get("/collections/films").json()["adapter_version"] == final["result"]["adapter_version"]
    assert final["result"]["adapter_version"] != version


def test_a_cancelled_retrain_stops_training_installs_nothing_and_the_collection_keeps_serving(
    client: TestClient, tmp_path: Path
) -> None:
    manifest, before = films_of_three_toy_videos(client, tmp_path)
    body = {"data": str(manifest), "epochs": 1000, "batch_size": 2, "lr": 1e-3}  # minutes, if not cancelled
    task_id = client.post("/collections/films/retrain", json=body).json()["task_id"]
    deadline = time.monotonic() + 120
    while "step" not in ((status := client.get(f"/tasks/{task_id}").json())["progress"] or {}):
        assert status["state"] in ("queued", "running") and time.monotonic() < deadline, status
        time.sleep(0.05)
    progress = status["progress"]
    assert progress["stage"] == "training" and 1 <= progress["step"] < progress["total_steps"], progress

    cancelled = client.post(f"/tasks/{task_id}/cancel")
    assert cancelled.status_code == 202, cancelled.text
    assert (cancelled.json()["state"], cancelled.json()["cancel_requested"]) == ("running", True)
    final = wait_for_task(client, task_id, timeout_s=60)[-1]
    assert final["state"] == "cancelled" and "cancelled by an admin" in final["reason"], final
    assert final["progress"]["step"] < final["progress"]["total_steps"]  # it stopped training early
    after = client.get("/collections/films").json()
    assert (after["adapter_version"], after["clips"]) == (before["adapter_version"], before["clips"])
    assert not list(services_of(client).layout.adapters_dir.glob("*"))  # nothing installed
    searched = client.post("/search", json={"collection": "films", "query": "a blue square"}).json()
    assert searched["adapter_version"] is None and searched["results"]

    again = client.post(f"/tasks/{task_id}/cancel")
    assert again.status_code == 409 and "has ended (cancelled)" in again.json()["reason"]
    unknown = client.post("/tasks/films." + "0" * 32 + "/cancel")
    assert unknown.status_code == 404 and "POST /collections" in unknown.json()["reason"]
    reindex = client.post("/collections/films/reindex", json={"adapter": None})
    assert reindex.status_code == 202  # the collection is free again

    listed = client.get("/collections/films/tasks").json()["tasks"]  # newest first
    assert [(t["task_id"], t["kind"]) for t in listed] == [
        (reindex.json()["task_id"], "reindex"),
        (task_id, "retrain"),
    ]
    assert listed[1]["state"] == "cancelled"
    limited = client.get("/collections/films/tasks", params={"limit": 1}).json()["tasks"]
    assert [t["task_id"] for t in limited] == [reindex.json()["task_id"]]
    assert client.get("/collections/nothing-here/tasks").status_code == 404
    wait_for_task(client, reindex.json()["task_id"])
    assert client.delete("/collections/films").status_code == 200
    assert client.post("/collections", json={"name": "films"}).status_code == 201
    assert client.get("/collections/films/tasks").json() == {"tasks": []}  # the old one's are forgotten


def test_bad_retrain_requests_are_4xx_with_reasons_before_anything_is_queued(
    seeded: tuple[TestClient, dict[str, str]], tmp_path: Path
) -> None:
    client, _ = seeded
    (tmp_path / "v.mp4").write_bytes(b"only its existence is checked before training")
    one_clip = tmp_path / "one.jsonl"
    one_clip.write_text(json.dumps({"video": str(tmp_path / "v.mp4"), "caption": "x"}) + "\n")
    two_clips = tmp_path / "two.jsonl"
    two_clips.write_text(one_clip.read_text() * 2)
    empty_caption = tmp_path / "empty.jsonl"
    empty_caption.write_text(json.dumps({"video": "a.mp4", "caption": ""}) + "\n")
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("nothing-here", {"data": str(one_clip)}, 404, "collection_not_found"),
        ("shapes", {"data": str(tmp_path / "missing.jsonl")}, 422, "invalid_training_data"),
        ("shapes", {"data": str(empty_caption)}, 422, "invalid_training_data"),
        ("shapes", {"data": str(one_clip)}, 422, "invalid_training_data"),  # a contrastive batch needs 2
        ("shapes", {"data": "/tmp/" + "x" * 300}, 422, "invalid_training_data"),  # a name too long
        ("shapes", {"data": str(one_clip), "method": "full"}, 422, "invalid_request"),
        ("shapes", {"data": str(one_clip), "epochs": 0}, 422, "invalid_request"),
        ("shapes", {"data": str(one_clip), "lr": 1}, 422, "invalid_request"),
        (
            "shapes",
            {"data": str(two_clips), "from_current": True},
            422,
            "invalid_training_data",
        ),  # plain CLIP
        ("shapes", {}, 422, "invalid_training_data"),  # no captions, no feedback: nothing to learn from
    ]
    for name, body, status, code in cases:
        response = client.post(f"/collections/{name}/retrain", json=body)
        assert (response.status_code, response.json()["code"]) == (status, code), (body, response.text)
        assert response.json()["reason"]
    assert services_of(client).tasks.status("shapes." + "0" * 32) is None


def test_the_retrain_methods_are_the_adapter_methods_of_the_training_package() -> None:
    from typing import get_args

    from service.schemas import RetrainRequest as RetrainBody
    from training.config import ADAPTER_METHODS
    from videoseek.retraining import ADAPTER_METHODS as RETRAIN_METHODS

    schema = get_args(RetrainBody.model_fields["method"].annotation)
    assert set(RETRAIN_METHODS) == set(ADAPTER_METHODS) == set(schema) and len(schema) == len(ADAPTER_METHODS)
