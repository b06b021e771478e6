"""The Celery app for distributed mode, built from settings by :func:`build_celery_app`.

Redis is both broker and result backend. Tasks are acknowledged late and rejected (requeued) when their worker
process dies, so a killed worker's task runs again elsewhere; that is safe because every write of the ingest
pipeline is idempotent (deterministic point ids, upserts, files written by atomic rename). With Redis the
redelivery of a message whose worker vanished happens once ``visibility_timeout`` has passed, so the timeout
should exceed the longest task (the hard time limit), or a slow task also runs a second time elsewhere
(harmless, wasted work): :func:`celery_config` logs a warning then.

Models are never loaded here: each worker *process* loads its own after fork (``process.py``). The app carries
its settings and the process's state (:class:`VideoseekCelery`), which tasks reach through ``self.app``: no
module-level state.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from kombu.entity import Exchange, Queue

from videoseek.settings import Settings
from worker.names import (
    QUEUE_EMBED,
    QUEUE_INGEST,
    QUEUE_TRAIN,
    QUEUES,
    RESULT_EXPIRES_S,
    TASK_DECODE,
    TASK_EMBED,
)
from worker.process import WorkerProcess
from worker.redis_clients import redis_client

log = logging.getLogger(__name__)


class WorkerConfigError(RuntimeError):
    """Distributed mode was asked for without what it needs (a Redis URL)."""


def broker_key_prefix(settings: Settings) -> str:
    """What every Redis key of Celery's broker and result backend starts with."""
    return f"{settings.worker.redis_prefix}celery:"


class QueueDepths:
    """Messages waiting in a Celery queue (not those a worker holds), read from the Redis broker for /metrics.

    kombu's Redis transport keeps a queue as one list per priority step (``name``, ``name\\x06\\x163``, ...);
    the key names come from its channel class, so they follow kombu rather than a copy of its convention.
    """

    def __init__(self, settings: Settings) -> None:
        if settings.redis_url is None:
            raise WorkerConfigError(
                "queue depths need VIDEOSEEK_REDIS_URL (there are no Celery queues without it)"
            )
        # Short timeouts: a metrics scrape must not hang on an unreachable broker.
        self._redis = redis_client(settings.redis_url, text=False, timeout_s=2.0)
        self._prefix = broker_key_prefix(settings)

    def __call__(self, queue: str) -> int:
        from kombu.transport.redis import Channel

        keys = [
            self._prefix + (f"{queue}{Channel.sep}{step}" if step else queue)
            for step in Channel.priority_steps
        ]
        pipeline = self._redis.pipeline(transaction=False)
        for key in keys:
            pipeline.llen(key)
        return int(sum(pipeline.execute()))

    def close(self) -> None:
        self._redis.close()


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings derived from videoseek settings (pure: no connection is made)."""
    if settings.redis_url is None:
        raise WorkerConfigError(
            "no Redis configured: set VIDEOSEEK_REDIS_URL=redis://host:6379/0 to use Celery workers "
            "(without it, ingest runs in-process in embedded mode)"
        )
    worker = settings.worker
    if worker.task_soft_time_limit_s >= worker.task_time_limit_s:
        raise WorkerConfigError(
            "VIDEOSEEK_WORKER__TASK_SOFT_TIME_LIMIT_S must be below VIDEOSEEK_WORKER__TASK_TIME_LIMIT_S"
        )
    if worker.visibility_timeout_s <= worker.task_time_limit_s:
        log.warning(
            "visibility timeout (%ss) <= task time limit (%ss): long tasks may run twice",
            worker.visibility_timeout_s,
            worker.task_time_limit_s,
        )
    transport = {
        "visibility_timeout": worker.visibility_timeout_s,
        "unacked_restore_interval": worker.unacked_restore_interval_s,
        # Scan for abandoned messages on every sweep, so recovery takes about one interval.
        "unacked_restore_throttle": 1,
        "global_keyprefix": broker_key_prefix(settings),
    }
    retry = {"max_retries": worker.max_retries, "retry_backoff_max": worker.retry_backoff_max_s}
    return {
        "broker_url": settings.redis_url,
        "result_backend": settings.redis_url,
        "broker_transport_options": transport,
        "result_backend_transport_options": {"global_keyprefix": broker_key_prefix(settings)},
        "broker_connection_retry_on_startup": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_expires": RESULT_EXPIRES_S,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": worker.task_soft_time_limit_s,
        "task_time_limit": worker.task_time_limit_s,
        # One direct exchange per queue: a message reaches exactly the queue it was routed to.
        "task_queues": [Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES],
        "task_default_queue": QUEUE_INGEST,
        "task_routes": {
            TASK_DECODE: {"queue": QUEUE_INGEST},
            TASK_EMBED: {"queue": QUEUE_EMBED},
            "videoseek.train.*": {"queue": QUEUE_TRAIN},
        },
        "task_annotations": {TASK_DECODE: retry, TASK_EMBED: retry},
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
    }


class VideoseekCelery(Celery):
    """A Celery app that carries its videoseek settings and what a worker process holds (``process``)."""

    settings: Settings
    process: WorkerProcess


def build_celery_app(settings: Settings, *, warm_model: bool = True) -> VideoseekCelery:
    """A Celery app for these settings with the videoseek tasks registered (importing them loads no model).

    ``warm_model``: a worker process loads CLIP as it starts (embed workers) rather than at its first task.
    """
    app = VideoseekCelery("videoseek", set_as_current=False)
    app.conf.update(celery_config(settings))
    app.settings = settings
    app.process = WorkerProcess(settings, warm_model=warm_model)
    # Registers the shared tasks on this app; tasks.py only imports lightweight modules at import time.
    import worker.tasks  # noqa: F401

    app.conf.include = ["worker.tasks"]
    return app


def connect_worker_hooks(app: VideoseekCelery) -> None:
    """Make this app's worker processes start and stop their state (``process.py``): call once, in the
    process that runs ``app.worker_main``, before it starts."""
    from celery.signals import worker_process_init, worker_process_shutdown, worker_shutdown

    from worker.process import start_worker_process, stop_worker_process

    def started(**_: Any) -> None:
        start_worker_process(app.process)

    def stopped(**_: Any) -> None:
        stop_worker_process(app.process)

    worker_process_init.connect(started, weak=False, dispatch_uid="videoseek.worker.process_init")
    worker_process_shutdown.connect(stopped, weak=False, dispatch_uid="videoseek.worker.process_shutdown")
    worker_shutdown.connect(stopped, weak=False, dispatch_uid="videoseek.worker.shutdown")
