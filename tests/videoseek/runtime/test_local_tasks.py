"""Admin tasks of embedded mode: one at a time per collection, cancelled at shutdown, a bounded memory."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from service_helpers import settings_for

from videoseek.retraining import RetrainRequest
from videoseek.runtime.base import AdminWork, TaskConflict, task_collection
from videoseek.runtime.embedded import embedded_context
from videoseek.runtime.local_tasks import LocalAdminTasks


def local_tasks(data_dir: Path) -> LocalAdminTasks:
    """Embedded admin tasks on a data dir nothing was opened on, with training work that is never reached."""

    def no_training(*_: Any) -> Any:
        raise AssertionError("this test runs no retrain")

    work = AdminWork(check_retrain=lambda *_: None, retrain=no_training)
    return LocalAdminTasks(embedded_context(settings_for(data_dir)), work)


def test_a_collection_being_reindexed_refuses_a_second_reindex(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    release = threading.Event()
    calls: list[tuple[str, str | None]] = []

    def slow_reindex(settings: object, name: str, version: str | None, **_: Any) -> Any:
        calls.append((name, version))
        release.wait(10)
        raise RuntimeError("stopped by the test")

    monkeypatch.setattr("videoseek.runtime.local_tasks.reindex_to_version", slow_reindex)
    tasks = local_tasks(tmp_path / "data")
    first = tasks.start_reindex("films", None, False)
    with pytest.raises(TaskConflict, match=first):
        tasks.start_reindex("films", "a" * 64, False)
    with pytest.raises(TaskConflict, match=first):  # nor a retrain: one task per collection at a time
        tasks.start_retrain("films", RetrainRequest(data="captions.jsonl"))
    other = tasks.start_reindex("clips", None, False)  # other collections are not held up
    release.set()
    for task_id in (first, other):
        deadline = time.monotonic() + 10
        while (status := tasks.status(task_id)) is not None and status.state != "failed":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert status is not None and status.reason == "RuntimeError: stopped by the test"
    again = tasks.start_reindex("films", None, False)  # free again once the first one ended
    assert again != first and task_collection(again) == "films"
    assert sorted(calls)[:2] == [("clips", None), ("films", None)]


def test_task_ids_name_their_collection_and_nothing_else_parses() -> None:
    assert task_collection("films." + "ab" * 16) == "films"
    for bad in ("films", "films.", "films.xyz", "Films." + "0" * 32, "../x." + "0" * 32, "a.b." + "0" * 32):
        assert task_collection(bad) is None, bad


def test_shutdown_cancels_running_tasks_so_they_stop_at_a_safe_point(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def reindex(settings: object, name: str, version: str | None, *, cancel: Any, **_: Any) -> Any:
        while True:  # a long re-index, checking between groups of videos
            cancel()
            time.sleep(0.01)

    monkeypatch.setattr("videoseek.runtime.local_tasks.reindex_to_version", reindex)
    tasks = local_tasks(tmp_path / "data")
    task_id = tasks.start_reindex("films", None, False)
    started = time.monotonic()
    tasks.close(10)
    status = tasks.status(task_id)
    assert time.monotonic() - started < 5 and status is not None and status.state == "cancelled", status
    assert status.reason is not None and "the server shut down" in status.reason


def test_an_embedded_server_keeps_the_last_finished_tasks_and_waits_for_running_ones_at_shutdown(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from videoseek.runtime import local_tasks as module

    release = threading.Event()

    def reindex(settings: object, name: str, version: str | None, **_: Any) -> Any:
        if name == "slow":
            release.wait(10)
        return SimpleNamespace(to_dict=lambda: {"collection": name})

    monkeypatch.setattr(module, "reindex_to_version", reindex)
    monkeypatch.setattr(module, "KEPT_FINISHED", 2)
    tasks = local_tasks(tmp_path / "data")
    finished = []
    for name in ("a", "b", "c"):
        finished.append(tasks.start_reindex(name, None, False))
        tasks.close(5)  # returns once the quick task has ended
    tasks.start_reindex("d", None, False)
    tasks.close(5)
    assert tasks.status(finished[0]) is None  # the oldest finished task was forgotten
    assert [tasks.status(t).state for t in finished[1:]] == ["done", "done"]  # type: ignore[union-attr]

    slow = tasks.start_reindex("slow", None, False)
    started = time.monotonic()
    tasks.close(0.3)  # shutdown does not wait forever for a task that will not end
    assert 0.25 <= time.monotonic() - started < 5 and tasks.status(slow).state == "running"  # type: ignore[union-attr]
    release.set()
    tasks.close(5)
    assert tasks.status(slow).state == "done"  # type: ignore[union-attr]
