"""``videoseek reindex``: re-embed a collection with a new adapter (or none) from its frame cache, then switch.

Started as the API starts it, through the runtime (holding the collection's admin-task slot, under a task id
that ``GET /tasks/{id}`` and ``POST /tasks/{id}/cancel`` accept in distributed mode). Embedded mode runs it in
this process and waits for it, holding the data directory (one writing process at a time: while ``videoseek
serve`` runs on it, ask that server instead, ``POST /collections/{name}/reindex``). With
``VIDEOSEEK_REDIS_URL`` set it is queued on the ``train`` queue for a ``videoseek worker --queues train``;
``--wait`` follows it to the end.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from videoseek.cli.common import fail, hold_data_dir
from videoseek.runtime.base import FINISHED, AdminTasks, Runtime
from videoseek.settings import SettingsError, load_settings

_POLL_S = 1.0


def _short(version: str | None) -> str:
    return version[:12] if version else "none"


def _print_summary(summary: dict[str, Any]) -> None:
    typer.echo(
        f"re-indexed {summary['collection']}: {summary['videos']} videos, {summary['clips']} clips, "
        f"adapter {_short(summary['old_adapter_version'])} -> {_short(summary['new_adapter_version'])} "
        f"in {summary['seconds']:.1f} s"
    )
    if summary["caught_up"] or summary["removed"]:
        typer.echo(f"  during the run: {summary['caught_up']} videos added, {summary['removed']} removed")
    for video_id in summary["missing"]:
        typer.echo(f"  left out (no cached frames): {video_id}")


def _ask_the_server(collection: str) -> Callable[[str], str]:
    """What ``reindex`` suggests when a server holds the data directory: the same re-index through its API."""
    return lambda url: (
        f', or ask the running server: POST {url}/collections/{collection}/reindex {{"adapter": ...}}'
    )


def _start(
    runtime: Runtime, collection: str, adapter: Path | None, allow_missing: bool
) -> tuple[str, str | None]:
    """Install the adapter (on the shared data volume in distributed mode) and start the task; its id."""
    from videoseek.collections import install_adapter, require_collection

    require_collection(runtime.context.store, collection)
    version = install_adapter(runtime.context.settings, adapter) if adapter is not None else None
    return runtime.tasks.start_reindex(collection, version, allow_missing), version


def _wait(tasks: AdminTasks, task_id: str) -> dict[str, Any]:
    """Poll the task to its end; its result, or the reason it did not finish."""
    while (status := tasks.status(task_id)) is not None and status.state not in FINISHED:
        time.sleep(_POLL_S)
    if status is None or status.state != "done" or status.result is None:
        why = status.reason if status is not None else "it is no longer known"
        raise fail(f"re-index task {task_id} {status.state if status else 'vanished'}: {why}", code=1)
    return {"task_id": task_id, **status.result}


def reindex(
    collection: Annotated[str, typer.Option("--collection", "-c", help="Collection to re-index.")],
    adapter: Annotated[
        Path | None, typer.Option(help="Adapter directory to switch to (verified, copied into the data dir).")
    ] = None,
    no_adapter: Annotated[
        bool, typer.Option("--no-adapter", help="Switch to plain CLIP (no adapter).")
    ] = False,
    allow_missing: Annotated[
        bool, typer.Option(help="Leave out videos without cached frames instead of failing.")
    ] = False,
    wait: Annotated[bool, typer.Option(help="With Celery workers: wait for the re-index to finish.")] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the summary as one JSON object.")
    ] = False,
) -> None:
    """Re-embed every clip of a collection with another adapter (no decoding), then switch searches to it."""
    if (adapter is None) == (not no_adapter):
        raise fail("give exactly one of --adapter DIR or --no-adapter")
    try:
        settings = load_settings()
    except SettingsError as exc:
        raise fail(str(exc)) from exc
    from videoseek.cli.runtime import open_runtime

    runtime = open_runtime(settings)
    try:
        hold_data_dir(runtime, "videoseek reindex", _ask_the_server(collection))  # embedded: one writer
        task_id, version = _start(runtime, collection, adapter, allow_missing)
        if runtime.runs_elsewhere:
            runtime.context.release_store()  # the worker writes now (an Edge store admits one process)
        if runtime.runs_elsewhere and not wait:
            summary = {
                "task_id": task_id,
                "collection": collection,
                "new_adapter_version": version,
                "queued": True,
            }
        else:
            summary = _wait(runtime.tasks, task_id)
    except typer.Exit:
        raise
    except Exception as exc:  # missing frames, bad adapter, store locked, Redis down: one line
        raise fail(f"{type(exc).__name__}: {exc}", code=1) from exc
    finally:
        runtime.close()
    if json_output:
        typer.echo(json.dumps(summary))
    elif summary.get("queued"):
        typer.echo(f"queued re-index of {collection} as task {summary['task_id']} (--wait to follow it)")
    else:
        _print_summary(summary)


def register(app: typer.Typer) -> None:
    app.command("reindex")(reindex)
