"""``videoseek flower``: Flower, the Celery ecosystem's monitor, on this deployment's workers and queues.

A stock ``celery flower`` cannot see videoseek's workers: every Celery key in Redis carries videoseek's prefix
(``VIDEOSEEK_WORKER__REDIS_PREFIX``) and the broker's transport options come from the settings. So Flower runs
on the very Celery app the workers run (:func:`worker.celery_app.build_celery_app`), built from the same
``VIDEOSEEK_*`` settings. Flower's own options can be given as its ``FLOWER_*`` variables, e.g.
``FLOWER_BASIC_AUTH=user:password``. Needs the ``monitor`` extra (``pip install 'videoseek[monitor]'``; the
Docker image has it).
"""

from __future__ import annotations

import importlib.util
from typing import Annotated

import typer

from videoseek.cli.common import fail
from videoseek.cli.runtime import run_mode
from videoseek.settings import SettingsError, load_settings


def flower(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port of Flower's web page.")] = 5555,
    address: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    url_prefix: Annotated[str, typer.Option(help="Serve under this path (behind a proxy).")] = "",
) -> None:
    """Run Flower (Celery's web monitor) on the workers and queues of VIDEOSEEK_REDIS_URL."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        raise fail(str(exc)) from exc
    if run_mode(settings) == "embedded":
        raise fail(
            "no Redis configured: set VIDEOSEEK_REDIS_URL=redis://host:6379/0 (Flower watches the Celery workers "
            "of distributed mode; embedded mode has none)"
        )
    if importlib.util.find_spec("flower") is None:
        raise fail("Flower is not installed: pip install 'videoseek[monitor]' (the Docker image has it)")
    from worker.celery_app import build_celery_app

    app = build_celery_app(settings, warm_model=False)
    argv = ["flower", f"--port={port}", f"--address={address}"]
    if url_prefix:
        argv.append(f"--url_prefix={url_prefix}")
    code = app.start(argv)
    if code:
        raise typer.Exit(code=code)


def register(app: typer.Typer) -> None:
    app.command("flower")(flower)
