"""``videoseek reindex``: re-embed a collection with a new adapter (or none) from its frame cache, then switch.

Embedded mode runs the re-index in this process, holding the data directory (one writing process at a time:
while ``videoseek serve`` runs on it, ask that server instead, ``POST /collections/{name}/reindex``). With ``VIDEOSEEK_REDIS_URL`` set it is queued on
the ``train`` queue for a ``videoseek worker --queues train``; ``--wait`` follows it to the end.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from videoseek.cli.common import fail, hold_data_dir
from videoseek.core.settings import Settings, SettingsError, load_settings

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


def _run_here(
    settings: Settings, collection: str, adapter: Path | None, allow_missing: bool
) -> dict[str, Any]:
    from videoseek.worker.reindex import reindex_collection

    with hold_data_dir(settings, "videoseek reindex", _ask_the_server(collection)):
        return reindex_collection(settings, collection, adapter, allow_missing=allow_missing).to_dict()


def _enqueue(
    settings: Settings, collection: str, adapter: Path | None, allow_missing: bool, wait: bool
) -> dict[str, Any]:
    """Install the adapter on the shared data volume, queue the task, and (``wait``) poll it to the end.

    Queued as the API queues it: holding the collection's admin-task slot (refused while another task runs
    on it), under a task id that ``GET /tasks/{id}`` and ``POST /tasks/{id}/cancel`` accept.
    """
    from videoseek.core.collections import close_shared_stores, install_adapter, require_collection
    from videoseek.service.collection_tasks import CeleryCollectionTasks
    from videoseek.worker.celery_app import get_celery_app

    require_collection(settings, collection)
    version = install_adapter(settings, adapter) if adapter is not None else None
    close_shared_stores()  # the worker writes now (an Edge store admits one process)
    task_id = CeleryCollectionTasks(settings).start_reindex(collection, version, allow_missing)
    task = get_celery_app(settings).AsyncResult(task_id)
    if not wait:
        return {"task_id": task.id, "collection": collection, "new_adapter_version": version, "queued": True}
    while not task.ready():
        time.sleep(_POLL_S)
    if task.failed():
        raise fail(f"re-index task {task.id} failed: {task.result}", code=1)
    return {"task_id": task.id, **task.result}


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
    try:
        if settings.embedded:
            summary = _run_here(settings, collection, adapter, allow_missing)
        else:
            summary = _enqueue(settings, collection, adapter, allow_missing, wait)
    except typer.Exit:
        raise
    except Exception as exc:  # missing frames, bad adapter, store locked, Redis down: one line
        raise fail(f"{type(exc).__name__}: {exc}", code=1) from exc
    finally:
        from videoseek.core.collections import close_shared_stores

        close_shared_stores()
    if json_output:
        typer.echo(json.dumps(summary))
    elif summary.get("queued"):
        typer.echo(f"queued re-index of {collection} as task {summary['task_id']} (--wait to follow it)")
    else:
        _print_summary(summary)


def register(app: typer.Typer) -> None:
    app.command("reindex")(reindex)
