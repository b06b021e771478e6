"""Stopping long work (a retrain, a re-index) on an admin's request, at points where stopping is safe.

The work is handed a :data:`CancelCheck` and calls it between units it can drop whole (a training step, a group
of re-embedded videos, before a collection switches versions); the check raises :class:`TaskCancelled` once a
stop was asked for. Who asks, and how the request reaches the check (an event in this process, a Redis key
across workers), is the caller's business.
"""

from __future__ import annotations

from collections.abc import Callable

CancelCheck = Callable[[], None]  # raises TaskCancelled once the work was asked to stop


class TaskCancelled(Exception):
    """The task was asked to stop (an admin, a shutdown); the collection keeps the version it had."""


def not_cancellable() -> None:
    """The check of work nobody can cancel (the CLI, tests)."""
