"""``videoseek worker``: a Celery worker for ingest (distributed mode; needs ``VIDEOSEEK_REDIS_URL``)."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from videoseek.cli.common import fail
from videoseek.cli.runtime import run_mode
from videoseek.settings import SettingsError, load_settings

Pool = Literal["prefork", "solo", "threads"]


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
            help="Use the embedded Qdrant Edge store although Redis is set: for ONE worker process on the "
            "machine holding the data dir (a single box, the fault tests); Edge admits one process at a time."
        ),
    ] = False,
) -> None:
    """Run a Celery worker consuming the given queues; models load once per worker process, after fork."""
    try:
        settings = load_settings()
        names = parse_queues(queues)
    except (SettingsError, ValueError) as exc:
        raise fail(str(exc)) from exc
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
    from worker.celery_app import build_celery_app, connect_worker_hooks

    app = build_celery_app(settings, warm_model="embed" in names)
    connect_worker_hooks(app)
    argv = ["worker", "-Q", ",".join(names), "-c", str(concurrency), "-P", pool, "-l", loglevel]
    argv += ["-n", f"videoseek-{'-'.join(names)}@%h", "--without-gossip", "--without-mingle"]
    app.worker_main(argv)


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)
