"""What the ``videoseek`` subcommands share: how a command fails with a reason, how it reads settings, and how
an embedded command takes its data directory."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import typer

from videoseek.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from videoseek.runtime.base import Runtime


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


def hold_data_dir(
    runtime: Runtime, command: str, via_server: Callable[[str], str], *, api_url: str | None = None
) -> None:
    """The runtime's hold on its data directory (embedded mode) for as long as the command runs.

    When another process holds it: exit status 2 with one line naming that process and what to do instead.
    ``via_server(url)`` words the way through the holder's API when the holder is a server that recorded its
    address; otherwise the way out is to wait. ``api_url``: where this process answers, if it is a server.
    """
    from videoseek.data_dir_lock import DataDirInUse

    try:
        runtime.hold_data_dir(command, api_url=api_url)
    except DataDirInUse as exc:
        holder = exc.holder
        instead = via_server(holder.api_url) if holder and holder.api_url else " (or wait until it ends)"
        raise fail(f"{exc}{instead}") from exc
