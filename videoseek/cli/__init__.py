"""The ``videoseek`` command (``app.py``: one module per capability registers its subcommands).

Importing this package loads no command: programs import ``videoseek.cli.runtime`` (where work runs) without
the training package that ``videoseek train`` needs.
"""

from __future__ import annotations


def main() -> None:
    from videoseek.cli.app import app

    app()
