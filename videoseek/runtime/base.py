"""Where background work runs, as one interface: :class:`Runtime`.

Everything a process hands to the background goes through its runtime: ingest jobs, admin tasks (re-index,
retrain) with their status, cancel and list, the job store and the collections' write locks. There are two:
:class:`~videoseek.runtime.embedded.EmbeddedRuntime` (threads of this process, SQLite jobs, ``flock``) and
``worker/runtime.py``'s ``DistributedRuntime`` (Celery workers on Redis). The program that starts a process
picks one, once (``videoseek/cli/runtime.py``), and passes it down; the pipeline functions it runs receive a
:class:`~videoseek.context.PipelineContext` and never ask where they run.

Admin task ids have the form ``<collection>.<hex>``, so a status request names its collection without a lookup
and a key limited to some collections is checked before anything is read.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from videoseek.layout import InvalidName, check_collection_name

if TYPE_CHECKING:  # this module is read by Celery's parent process too: no PyAV, no torch
    from videoseek.cancel import CancelCheck
    from videoseek.context import PipelineContext
    from videoseek.ingest.submit import SubmitResult
    from videoseek.pairs import PairDraft
    from videoseek.retraining import RetrainRequest

RunMode = Literal["embedded", "distributed"]
TaskKind = Literal["reindex", "retrain", "rollback"]
TASK_KINDS: tuple[TaskKind, ...] = ("reindex", "retrain", "rollback")
TaskState = Literal["queued", "running", "done", "failed", "cancelled"]
FINISHED: tuple[TaskState, ...] = ("done", "failed", "cancelled")
RECENT_TASKS_LISTED = 20  # at most this many of a collection's tasks are listed, newest first
Progress = Callable[[dict[str, Any]], None]


class TaskConflict(RuntimeError):
    """The collection is busy with another task, or the task has ended (the API answers 409)."""


@dataclass(frozen=True)
class TaskStatus:
    """Where one task is. ``progress``: its latest report (stage, counts); ``result`` once done."""

    task_id: str
    collection: str
    kind: TaskKind | None  # None: not known yet (a Celery task no worker has started)
    state: TaskState
    progress: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    reason: str | None = None
    cancel_requested: bool = False


@dataclass(frozen=True)
class AdminWork:
    """The work of the admin tasks that the library does not hold: training (``training/retrain.py``).

    The program that builds a runtime passes it in, so neither the library nor the API imports the training
    package; re-indexing is the library's own (``videoseek/reindex.py``).
    """

    # Refuses a request that cannot train (RetrainError, CollectionNotFound) before anything is queued.
    check_retrain: Callable[[PipelineContext, str, RetrainRequest], None]
    # Trains, installs the adapter and re-indexes the collection with it; returns the task's result.
    retrain: Callable[[PipelineContext, str, RetrainRequest, Progress, CancelCheck], dict[str, Any]]


class AdminTasks(Protocol):
    """Admin tasks on collections: one at a time per collection."""

    def start_reindex(self, collection: str, adapter_version: str | None, allow_missing: bool) -> str:
        """Re-index ``collection`` to an installed adapter version (None: plain CLIP); returns the task id."""
        ...

    def start_retrain(self, collection: str, request: RetrainRequest) -> str:
        """Check the request, then train a new adapter for ``collection`` and re-index with it; the task id."""
        ...

    def start_rollback(self, collection: str, physical: str) -> str:
        """Put back ``physical``, a version of ``collection`` kept for rollback; returns the task id."""
        ...

    def status(self, task_id: str) -> TaskStatus | None:
        """None when no such task is known."""
        ...

    def cancel(self, task_id: str) -> TaskStatus | None:
        """Ask a queued or running task to stop; its status then. None: no such task; TaskConflict: it ended."""
        ...

    def recent(self, collection: str, limit: int) -> list[TaskStatus]:
        """The collection's tasks, newest first: running or queued ones, and finished ones still known."""
        ...

    def forget(self, collection: str) -> None:
        """The collection was deleted: drop its finished tasks from :meth:`recent` (status by id stays)."""
        ...

    def close(self, timeout_s: float = 10.0) -> None:
        """At shutdown, before the store closes: let tasks of this process end (up to ``timeout_s``)."""
        ...


class Runtime(Protocol):
    """Where this process's background work runs; built without side effects, then started once."""

    @property
    def mode(self) -> RunMode: ...

    @property
    def runs_elsewhere(self) -> bool:
        """True when queued work goes on after this process exits (Celery workers run it), False when it
        runs on this process's threads (then it resumes at the process's next start)."""
        ...

    @property
    def context(self) -> PipelineContext:
        """The process's stores and image tower, shared with whatever runs here."""
        ...

    @property
    def tasks(self) -> AdminTasks: ...

    @property
    def queues(self) -> tuple[str, ...]:
        """The names of the queues work waits in (what :meth:`queue_depths` reports)."""
        ...

    @property
    def owns_data_dir(self) -> bool:
        """True when this process is the data directory's only writer once started (embedded: it holds the
        directory's lock), so whatever a dead process left half-written there is garbage."""
        ...

    def hold_data_dir(self, command: str, *, api_url: str | None = None) -> None:
        """Take the data directory for this process, as ``command`` (answering at ``api_url``), until
        :meth:`close`; ``DataDirInUse`` when another process holds it. A no-op where many processes share it
        by design (distributed mode) and once held."""
        ...

    def start(self) -> None:
        """Start what runs in this process (embedded: the data directory, if not held yet, then the ingest
        threads, resuming unfinished jobs); a started runtime stays as it is."""
        ...

    def submit_ingest(
        self,
        collection: str,
        path: Path,
        source_name: str | None = None,
        metadata: dict[str, Any] | None = None,
        *,
        move: bool = False,
        pairs: Sequence[PairDraft] = (),
    ) -> SubmitResult:
        """Store a file in the collection and queue its ingest (``IngestQueueFull`` when there is no room);
        ``pairs``: captions and subtitle cues for it, stored as its training pairs."""
        ...

    def queue_depths(self) -> dict[str, float]:
        """How many items wait in each queue of this deployment, read now (for /metrics; may raise the
        errors of the service it reads, such as Redis')."""
        ...

    def wait_idle(self, timeout_s: float | None = None) -> bool:
        """Wait until the work this process runs has finished, playback copies included (embedded: its ingest
        threads; distributed: nothing runs here); False on timeout."""
        ...

    def health_checks(self) -> dict[str, str]:
        """'ok' or the reason, per service the runtime depends on beyond the clip store (for /readyz)."""
        ...

    def close(self) -> None:
        """Stop what runs here (tasks first, at a safe point), then release the stores."""
        ...


def refuse_if_ended(status: TaskStatus) -> None:
    """TaskConflict: a task that has ended cannot be cancelled."""
    if status.state in FINISHED:
        raise TaskConflict(f"task {status.task_id} has ended ({status.state}): there is nothing to cancel")


def collection_busy(collection: str, holder: str) -> TaskConflict:
    return TaskConflict(f"collection {collection!r} is busy with task {holder}: wait for it to end")


def new_task_id(collection: str) -> str:
    return f"{collection}.{uuid.uuid4().hex}"


def task_collection(task_id: str) -> str | None:
    """The collection a task id was made for; None if it is not one of ours."""
    name, dot, rest = task_id.partition(".")
    if not dot or len(rest) != 32 or any(c not in "0123456789abcdef" for c in rest):
        return None
    try:
        return check_collection_name(name)
    except InvalidName:
        return None
