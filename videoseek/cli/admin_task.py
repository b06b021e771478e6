"""Running an admin task from the command line as the API runs it: through the runtime, under a task id.

Shared by ``reindex``, ``retrain`` and ``rollback``. The task holds the collection's admin-task slot, as one
started over HTTP does. Embedded mode runs it in this process and waits for it, holding the data directory
(one writing process at a time: while ``videoseek serve`` runs on it, the message says which API call does the
same through that server). With ``VIDEOSEEK_REDIS_URL`` set it is queued on the ``train`` queue for a
``videoseek worker --queues train``; ``--wait`` follows it to the end, and its id works with ``GET /tasks/{id}``
and ``POST /tasks/{id}/cancel``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import typer

from videoseek.cli.common import fail, hold_data_dir
from videoseek.runtime.base import FINISHED, AdminTasks, Runtime
from videoseek.settings import SettingsError, load_settings

POLL_S = 1.0
Start = Callable[[Runtime], tuple[str, dict[str, Any]]]  # the task id, and what to print if it is only queued


def short(version: str | None) -> str:
    return version[:12] if version else "none"


def wait_for(tasks: AdminTasks, task_id: str, what: str) -> dict[str, Any]:
    """Poll the task to its end; its result, or exit status 1 with the reason it did not finish."""
    while (status := tasks.status(task_id)) is not None and status.state not in FINISHED:
        time.sleep(POLL_S)
    if status is None or status.state != "done" or status.result is None:
        why = status.reason if status is not None else "it is no longer known"
        raise fail(f"{what} task {task_id} {status.state if status else 'vanished'}: {why}", code=1)
    return {"task_id": task_id, **status.result}


def run_admin_task(
    command: str,
    via_server: Callable[[str], str],
    start: Start,
    *,
    wait: bool,
    json_output: bool,
    show: Callable[[dict[str, Any]], None],
) -> None:
    """Start the task on this process's runtime, wait for it (embedded, or ``wait``) and print its summary."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        raise fail(str(exc)) from exc
    from videoseek.cli.runtime import open_runtime

    runtime = open_runtime(settings)
    what = command.removeprefix("videoseek ")
    try:
        hold_data_dir(runtime, command, via_server)  # embedded: one writer
        task_id, queued = start(runtime)
        if runtime.runs_elsewhere:
            runtime.context.release_store()  # the worker writes now (an Edge store admits one process)
        if runtime.runs_elsewhere and not wait:
            summary = {"task_id": task_id, **queued, "queued": True}
        else:
            summary = wait_for(runtime.tasks, task_id, what)
    except typer.Exit:
        raise
    except Exception as exc:  # bad data, missing frames, store locked, Redis down: one line
        raise fail(f"{type(exc).__name__}: {exc}", code=1) from exc
    finally:
        runtime.close()
    if json_output:
        typer.echo(json.dumps(summary))
    elif summary.get("queued"):
        typer.echo(f"queued {what} as task {summary['task_id']} (--wait to follow it)")
    else:
        show(summary)
