"""``videoseek config``: print the effective settings (secrets masked), or fail with what to fix."""

from __future__ import annotations

import json

import typer

from videoseek.core.settings import SettingsError, load_settings


def config() -> None:
    """Print the effective settings as JSON (secrets masked); exit 2 if they are invalid."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(code=2) from exc
    payload = settings.model_dump(mode="json")
    payload["model"] = str(settings.model)
    payload["mode"] = "embedded" if settings.embedded else "distributed"
    typer.echo(json.dumps(payload, indent=2, default=str))


def register(app: typer.Typer) -> None:
    app.command("config")(config)
