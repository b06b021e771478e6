"""Distributed mode as a runtime: background work goes to Celery workers through Redis.

The API (and the CLI, with ``VIDEOSEEK_REDIS_URL`` set) submits ingest jobs as Celery tasks, starts admin tasks
on the ``train`` queue and follows them in Redis; job state is Redis hashes, write locks are Redis locks, and
the clip store is a Qdrant server shared by every process. Worker processes build the same
``distributed_context`` (``context.py``) for the tasks they run (``process.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from videoseek.ingest.submit import IngestQueueFull, SubmitResult, submit_file
from videoseek.pairs import PairDraft
from videoseek.runtime.base import AdminWork
from videoseek.settings import Settings
from worker.admin_state import AdminState
from worker.admin_tasks import CeleryAdminTasks
from worker.celery_app import QueueDepths, build_celery_app
from worker.context import distributed_context, redis_url_of
from worker.names import QUEUE_INGEST, QUEUES, TASK_DECODE
from worker.redis_client import redis_client


class DistributedRuntime:
    """Celery workers run ingest and admin tasks; this process only sends and follows them."""

    mode: Literal["distributed"] = "distributed"
    runs_elsewhere = True
    owns_data_dir = False  # the API replicas and the workers share the data volume by design
    queues = QUEUES

    def __init__(self, settings: Settings, work: AdminWork) -> None:
        url = redis_url_of(settings)
        self.settings = settings
        self.context = distributed_context(settings)
        self.app = build_celery_app(settings, warm_model=False)
        client = redis_client(url, settings.worker.redis_timeout_s, decode_responses=True)
        self.admin = AdminState.on(client, settings.worker.redis_prefix)
        self.tasks = CeleryAdminTasks(self.app, self.admin, self.context, work)
        self._depths = QueueDepths(settings)

    def hold_data_dir(self, command: str, *, api_url: str | None = None) -> None:
        """Nothing to hold: what needs one owner lives in Redis and the Qdrant server."""

    def start(self) -> None:
        """Nothing runs here: the workers own the work."""

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
        self._refuse_when_backlogged()
        return submit_file(
            self.context, self._enqueue, collection, path, source_name, metadata, move=move, pairs=pairs
        )

    def _enqueue(self, job_id: str) -> None:
        # Sent once: Celery's publish retries would multiply the wait on a hung Redis, and a pooled connection
        # the server closed is replaced without one.
        self.app.send_task(TASK_DECODE, args=[job_id], retry=False)

    def _refuse_when_backlogged(self) -> None:
        """No new work while the ingest queue already holds ``worker.queue_size`` jobs.

        The embedded runner's bounded queue does this itself; a broker has no bound, so without this check a
        burst of uploads would pile up on disk faster than the workers can decode them.
        """
        waiting = self._depths(QUEUE_INGEST)
        if waiting >= self.settings.worker.queue_size:
            raise IngestQueueFull(
                f"{waiting} jobs are waiting for an ingest worker; retry shortly "
                "(or start more workers, or raise VIDEOSEEK_WORKER__QUEUE_SIZE)"
            )

    def queue_depths(self) -> dict[str, float]:
        return {queue: float(depth) for queue, depth in self._depths.all(QUEUES).items()}

    def wait_idle(self, timeout_s: float | None = None) -> bool:
        return True  # the workers run everything

    def health_checks(self) -> dict[str, str]:
        try:
            self.context.jobs.ping()
        except Exception as exc:  # readiness reports any failure, it never raises
            return {"redis": f"unavailable: {exc}"}
        return {"redis": "ok"}

    def close(self) -> None:
        self.tasks.close()
        self.context.close()
        self.admin.close()
        self._depths.close()
