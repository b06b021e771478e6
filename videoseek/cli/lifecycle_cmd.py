"""``videoseek retrain``, ``videoseek versions`` and ``videoseek rollback``: a collection's adapter over time.

The same work as ``POST /collections/{name}/retrain`` and ``/rollback`` and ``GET .../versions``, run through
the runtime (``videoseek/cli/admin_task.py``): ``retrain`` with no options learns from the collection's own
pairs, and the guard installs the new adapter only if it ranks held-out pairs better.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from videoseek.cli.admin_task import run_admin_task, short
from videoseek.cli.common import cli_settings, fail
from videoseek.retraining import RetrainRequest
from videoseek.runtime.base import Runtime

Collection = Annotated[str, typer.Option("--collection", "-c", help="The collection.")]
Wait = Annotated[bool, typer.Option(help="With Celery workers: wait for the task to finish.")]
JsonOutput = Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")]


def _via(collection: str, call: str) -> Any:
    return lambda url: f", or ask the running server: POST {url}/collections/{collection}/{call}"


def _recall(metrics: dict[str, Any] | None) -> str:
    return "-" if not metrics else f"R@1 {metrics['R@1']:.1f}, R@5 {metrics['R@5']:.1f}"


def _show_retrain(summary: dict[str, Any]) -> None:
    validation = summary["validation"]
    typer.echo(
        f"retrained {summary['collection']}: {summary['outcome']} "
        f"(adapter now {short(summary['adapter_version'])}); {summary['why']}"
    )
    typer.echo(
        f"  held-out pairs {validation['pairs']}: serving {_recall(validation['current'])}; "
        f"new {_recall(validation['candidate'])}"
    )
    serving = summary.get("serving") or {}
    if serving.get("pooling"):
        typer.echo(f"  searches pool frames by {serving['pooling']}: {serving['why']}")
    training = summary["training"]
    typer.echo(
        f"  trained on {training['clips']} pairs {summary['training_pairs'] or ''}: {training['steps']} steps, "
        f"kept epoch {training['best_epoch']}, run in {training['run_dir']}"
    )


def retrain(
    collection: Collection,
    data: Annotated[
        Path | None, typer.Option(help="A captions.jsonl manifest instead of the collection's own pairs.")
    ] = None,
    method: Annotated[str, typer.Option(help="cma, cma-noshare, vision or text.")] = "cma",
    epochs: Annotated[int | None, typer.Option(help="At most this many (default: the recipe's).")] = None,
    lr: Annotated[float | None, typer.Option(help="Default: the recipe's for the backbone.")] = None,
    from_current: Annotated[bool, typer.Option(help="Continue the collection's adapter.")] = False,
    force: Annotated[bool, typer.Option(help="Install even if the guard would keep what serves.")] = False,
    wait: Wait = False,
    json_output: JsonOutput = False,
) -> None:
    """Train a new adapter on the collection's pairs; installed only if it ranks held-out pairs better."""
    request = RetrainRequest(
        data=str(data.resolve()) if data else None,
        method=method,
        epochs=epochs,
        lr=lr,
        from_current=from_current,
        force=force,
    )

    def start(runtime: Runtime) -> tuple[str, dict[str, Any]]:
        return runtime.tasks.start_retrain(collection, request), {"collection": collection}

    run_admin_task(
        "videoseek retrain", _via(collection, "retrain {}"), start, wait=wait, json_output=json_output,
        show=_show_retrain,
    )  # fmt: skip


def _show_rollback(summary: dict[str, Any]) -> None:
    typer.echo(
        f"rolled {summary['collection']} back to {summary['physical']} (adapter "
        f"{short(summary['old_adapter_version'])} -> {short(summary['new_adapter_version'])}): "
        f"{summary['videos']} videos, {summary['caught_up']} added and {summary['removed']} removed since"
    )


def rollback(
    collection: Collection,
    version: Annotated[
        str | None, typer.Option(help="The kept version to put back (default: the one that served last).")
    ] = None,
    wait: Wait = False,
    json_output: JsonOutput = False,
) -> None:
    """Put back an earlier version of a collection (its vectors as they were; nothing is decoded)."""

    def start(runtime: Runtime) -> tuple[str, dict[str, Any]]:
        from videoseek.versions import rollback_target

        target = rollback_target(runtime.context.store, collection, version)
        task_id = runtime.tasks.start_rollback(collection, target.physical)
        return task_id, {"collection": collection, "physical": target.physical}

    run_admin_task(
        "videoseek rollback", _via(collection, "rollback"), start, wait=wait, json_output=json_output,
        show=_show_rollback,
    )  # fmt: skip


def versions(collection: Collection, json_output: JsonOutput = False) -> None:
    """List a collection's live version and the earlier ones kept for rollback, with their metrics."""
    from videoseek.cli.runtime import open_runtime
    from videoseek.versions import list_versions, recorded_pooling

    settings = cli_settings()
    runtime = open_runtime(settings)
    try:
        views = list_versions(runtime.context.store, runtime.context.layout, collection)
    except Exception as exc:  # no such collection, store locked by a server: one line
        raise fail(f"{type(exc).__name__}: {exc}", code=1) from exc
    finally:
        runtime.close()
    for view in views:
        info, record = view.info, view.record or {}
        pooling = recorded_pooling(
            view.record, settings.search.pooling, use_chosen=settings.adapters.choose_pooling
        )
        if json_output:
            row = {"physical": info.physical, "adapter_version": info.adapter_version, "live": info.live}
            typer.echo(json.dumps({**row, "points": info.points, "pooling": pooling, "metrics": view.record}))
            continue
        validation = (record.get("validation") or {}).get("candidate")
        typer.echo(
            f"{'*' if info.live else ' '} {info.physical:<28} adapter {short(info.adapter_version):<12} "
            f"{info.points:>7} clips  served {info.activated_at:%Y-%m-%d %H:%M}  {pooling:<16}  "
            f"{_recall(validation)}"
        )


def register(app: typer.Typer) -> None:
    app.command("retrain")(retrain)
    app.command("versions")(versions)
    app.command("rollback")(rollback)
