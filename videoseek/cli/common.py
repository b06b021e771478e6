"""What the ``videoseek`` subcommands share: how a command fails with a reason, and how it reads settings."""

from __future__ import annotations

from typing import Any

import typer

from videoseek.settings import Settings, SettingsError, load_settings


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: <message>`` on stderr; the caller raises the returned exit (status 2 by default)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=code)


def cli_settings(**overrides: Any) -> Settings:
    """Settings from the environment with the options the user passed (None: not passed) on top."""
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except SettingsError as exc:
        raise fail(str(exc)) from exc
