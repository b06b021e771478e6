"""``python -m videoseek`` is the ``videoseek`` command."""

from videoseek.cli import main

main()
