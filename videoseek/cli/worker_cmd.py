"""``videoseek worker``: a Celery worker for ingest (distributed mode; needs ``VIDEOSEEK_REDIS_URL``)."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from videoseek.cli.common import fail
from videoseek.cli.runtime import run_mode
from videoseek.settings import Settings, SettingsError, load_settings

Pool = Literal["prefork", "solo", "threads"]
PING_TIMEOUT_S = 5.0


def parse_queues(text: str) -> list[str]:
    """``ingest,embed`` -> the queue names, checked against the queues videoseek uses."""
    from worker.names import QUEUES

    queues = [q.strip() for q in text.split(",") if q.strip()]
    unknown = [q for q in queues if q not in QUEUES]
    if not queues or unknown:
        raise ValueError(f"unknown queue(s) {unknown or text!r}: choose from {', '.join(QUEUES)}")
    return queues


def worker(
    queues: Annotated[
        str, typer.Option(help="Comma-separated queues: ingest (decode, CPU), embed (CLIP, GPU), train.")
    ] = "ingest,embed",
    concurrency: Annotated[
        int, typer.Option(min=1, help="Worker processes (threads with --pool threads).")
    ] = 1,
    pool: Annotated[str, typer.Option(help="prefork (default), solo (one process) or threads.")] = "prefork",
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "info",
    allow_embedded_store: Annotated[
        bool,
        typer.Option(
            "--allow-embedded-store",
            help="Use the embedded Qdrant Edge store although Redis is set: ONE worker process, on the "
            "machine holding the data dir (Edge admits one process; for tests: no API can search it).",
        ),
    ] = False,
    ping: Annotated[
        bool,
        typer.Option(
            "--ping",
            help="Do not start a worker: exit 0 if this host's worker for --queues answers Celery's ping "
            "(`celery inspect ping`), 1 if not (container healthchecks).",
        ),
    ] = False,
) -> None:
    """Run a Celery worker consuming the given queues; models load once per worker process, after fork."""
    try:
        settings = load_settings()
        names = parse_queues(queues)
    except (SettingsError, ValueError) as exc:
        raise fail(str(exc)) from exc
    if ping:
        _ping(settings, names)
        return
    if pool not in ("prefork", "solo", "threads"):
        raise fail(f"unknown pool {pool!r}: use prefork, solo or threads")
    if run_mode(settings) == "embedded":
        raise fail(
            "no Redis configured: set VIDEOSEEK_REDIS_URL=redis://host:6379/0 (workers take jobs from Redis); "
            "without it, `videoseek serve` and `videoseek ingest` run ingest in-process"
        )
    from videoseek.cli.runtime import distributed_store_problem

    problem = distributed_store_problem(settings)
    if problem is not None and not allow_embedded_store:  # refused like `serve`: one Edge dir, many workers
        raise fail(problem)
    if problem is not None and pool == "prefork" and concurrency > 1:
        raise fail(
            f"--allow-embedded-store needs one worker process, but --concurrency {concurrency} starts "
            f"{concurrency} and each would open the Edge store: use --concurrency 1 or --pool threads"
        )
    if {"embed", "train"} & set(names):  # these load CLIP: fetch a missing one once, before taking tasks
        from videoseek.cli.models_cmd import ensure_model

        ensure_model(settings)
    from worker.celery_app import build_celery_app, connect_worker_hooks

    app = build_celery_app(settings, warm_model="embed" in names)
    connect_worker_hooks(app)
    argv = ["worker", "-Q", ",".join(names), "-c", str(concurrency), "-P", pool, "-l", loglevel]
    argv += ["-n", f"{node_prefix(names)}@%h", "--without-gossip", "--without-mingle"]
    app.worker_main(argv)


def node_prefix(queues: list[str]) -> str:
    """The part before ``@host`` of the Celery node name of a worker consuming ``queues``."""
    return f"videoseek-{'-'.join(queues)}"


def _ping(settings: Settings, names: list[str]) -> None:
    """Exit 0 if the worker of these queues on this host answers a Celery ping within 5 s, else 1."""
    import socket

    if run_mode(settings) == "embedded":
        raise fail("no Redis configured: set VIDEOSEEK_REDIS_URL to reach the workers")
    from worker.celery_app import build_celery_app

    node = f"{node_prefix(names)}@{socket.gethostname()}"
    app = build_celery_app(settings, warm_model=False)
    try:
        replies = app.control.ping(destination=[node], timeout=PING_TIMEOUT_S) or []
    except Exception as exc:  # Redis down or refusing: not healthy, with the reason
        typer.echo(f"{node}: no answer ({type(exc).__name__}: {exc})", err=True)
        raise typer.Exit(code=1) from exc
    finally:
        app.close()
    if not any(node in reply for reply in replies):
        typer.echo(f"{node}: no answer within {PING_TIMEOUT_S:g} s", err=True)
        raise typer.Exit(code=1)
    typer.echo(f"{node}: pong")


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)
