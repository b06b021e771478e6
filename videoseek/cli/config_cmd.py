"""``videoseek config``: print the effective settings (secrets masked), or fail with what to fix."""

from __future__ import annotations

import json

import typer

from videoseek.cli.runtime import run_mode
from videoseek.settings import SettingsError, load_settings, mask_url


def _mask_urls(value: object) -> object:
    """``value`` (a JSON dump) with the password of every URL in it masked, as SecretStr masks API keys.

    Every string is checked, not a list of fields, so a URL setting added later is masked too."""
    if isinstance(value, dict):
        return {key: _mask_urls(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_mask_urls(item) for item in value]
    if isinstance(value, str) and "://" in value:
        return mask_url(value)
    return value


def config() -> None:
    """Print the effective settings as JSON (secrets masked); exit 2 if they are invalid."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(code=2) from exc
    payload = settings.model_dump(mode="json")
    payload["model"] = str(settings.model)
    payload["mode"] = run_mode(settings)
    typer.echo(json.dumps(_mask_urls(payload), indent=2, default=str))


def register(app: typer.Typer) -> None:
    app.command("config")(config)
