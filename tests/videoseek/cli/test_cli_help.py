"""Every command's ``--help`` shows its option names whole on an 80-column terminal (errors name those flags)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from videoseek.cli.app import app


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    subcommands = getattr(command, "commands", None)
    if subcommands is None:
        yield path, command
        return
    for name, sub in subcommands.items():
        yield from _commands(sub, (*path, name))


COMMANDS = dict(_commands(typer.main.get_command(app)))


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=" ".join)
def test_every_option_name_fits_whole_in_80_columns(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=80, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    names = [o for p in COMMANDS[path].params for o in (*p.opts, *p.secondary_opts) if o.startswith("-")]
    cut = [name for name in names if name not in result.output]
    assert not cut, f"`videoseek {' '.join(path)} --help` at 80 columns cuts {cut}:\n{result.output}"


def test_worker_help_names_the_flags_its_errors_refer_to() -> None:
    result = CliRunner().invoke(app, ["worker", "--help"], terminal_width=80, env={"COLUMNS": "80"})
    assert "--allow-embedded-store" in result.output and "--ping" in result.output
