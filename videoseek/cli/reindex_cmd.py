"""``videoseek reindex``: re-embed a collection with a new adapter (or none) from its frame cache, then switch.

Run as the API runs it (``videoseek/cli/admin_task.py``): in this process in embedded mode, queued for a
``train`` worker in distributed mode. While ``videoseek serve`` holds the data directory, ask that server
instead (``POST /collections/{name}/reindex``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from videoseek.cli.admin_task import run_admin_task, short
from videoseek.cli.common import fail
from videoseek.runtime.base import Runtime


def _print_summary(summary: dict[str, Any]) -> None:
    typer.echo(
        f"re-indexed {summary['collection']}: {summary['videos']} videos, {summary['clips']} clips, "
        f"adapter {short(summary['old_adapter_version'])} -> {short(summary['new_adapter_version'])} "
        f"in {summary['seconds']:.1f} s"
    )
    if summary["caught_up"] or summary["removed"]:
        typer.echo(f"  during the run: {summary['caught_up']} videos added, {summary['removed']} removed")
    for video_id in summary["missing"]:
        typer.echo(f"  left out (no cached frames): {video_id}")


def _ask_the_server(collection: str) -> Any:
    """What ``reindex`` suggests when a server holds the data directory: the same re-index through its API."""
    return lambda url: (
        f', or ask the running server: POST {url}/collections/{collection}/reindex {{"adapter": ...}}'
    )


def _starter(collection: str, adapter: Path | None, allow_missing: bool) -> Any:
    def start(runtime: Runtime) -> tuple[str, dict[str, Any]]:
        """Install the adapter (on the shared data volume in distributed mode) and start the task."""
        from videoseek.collections import install_adapter, require_collection

        require_collection(runtime.context.store, collection)
        version = install_adapter(runtime.context.settings, adapter) if adapter is not None else None
        task_id = runtime.tasks.start_reindex(collection, version, allow_missing)
        return task_id, {"collection": collection, "new_adapter_version": version}

    return start


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
    start = _starter(collection, adapter, allow_missing)
    run_admin_task(
        "videoseek reindex",
        _ask_the_server(collection),
        start,
        wait=wait,
        json_output=json_output,
        show=_print_summary,
    )


def register(app: typer.Typer) -> None:
    app.command("reindex")(reindex)
