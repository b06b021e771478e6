"""The ``videoseek`` command's Typer app. Each capability registers its own subcommands from its own module."""

from __future__ import annotations

import typer

from videoseek.cli import (
    adapter_cmd,
    config_cmd,
    demo_cmd,
    flower_cmd,
    ingest_cmd,
    lifecycle_cmd,
    models_cmd,
    pairs_cmd,
    reindex_cmd,
    serve_cmd,
    toy_cmd,
    train_cmd,
    worker_cmd,
)

app = typer.Typer(
    name="videoseek",
    help="Self-hosted text-to-video search.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """Self-hosted text-to-video search. Settings come from VIDEOSEEK_* variables (see `videoseek config`)."""


# Order here is the order in --help. A module is listed only once its commands work.
for _module in (
    config_cmd,
    serve_cmd,
    demo_cmd,
    models_cmd,
    adapter_cmd,
    ingest_cmd,
    pairs_cmd,
    reindex_cmd,
    lifecycle_cmd,
    worker_cmd,
    flower_cmd,
    train_cmd,
    toy_cmd,
):
    _module.register(app)
