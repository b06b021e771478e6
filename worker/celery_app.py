"""The Celery app for distributed mode, built from settings by :func:`build_celery_app`.

Redis is both broker and result backend. Tasks are acknowledged late and rejected (requeued) when their worker
process dies, so a killed worker's task runs again elsewhere; that is safe because every write of the ingest
pipeline is idempotent (deterministic point ids, upserts, files written by atomic rename). With Redis the
redelivery of a message whose worker vanished happens once ``visibility_timeout`` has passed since the
worker last renewed it: every worker renews the messages it holds (``unacked_heartbeat.py``), so the timeout
bounds how long a killed worker's task waits (5 min by default), not how long a task may run.

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
from worker.context import WorkerConfigError
from worker.names import (
    QUEUE_EMBED,
    QUEUE_INGEST,
    QUEUE_TRAIN,
    QUEUES,
    RESULT_EXPIRES_S,
    TASK_DECODE,
    TASK_EMBED,
    TASK_PLAYBACK,
)
from worker.process import WorkerProcess
from worker.redis_client import connect_timeout_s, redis_client
from worker.result_backend import BACKEND_PATH
from worker.unacked_heartbeat import UNACKED_INDEX_KEY, UnackedHeartbeatStep

log = logging.getLogger(__name__)


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
        self._redis = redis_client(settings.redis_url, settings.worker.redis_timeout_s)
        self._prefix = broker_key_prefix(settings)

    def _keys(self, queue: str) -> list[str]:
        from kombu.transport.redis import Channel

        return [
            self._prefix + (f"{queue}{Channel.sep}{step}" if step else queue)
            for step in Channel.priority_steps
        ]

    def __call__(self, queue: str) -> int:
        return self.all((queue,))[queue]

    def all(self, queues: tuple[str, ...] = QUEUES) -> dict[str, int]:
        """The depth of each queue, read in one round trip (a metrics scrape waits on Redis once)."""
        keys = {queue: self._keys(queue) for queue in queues}
        pipeline = self._redis.pipeline(transaction=False)
        for key in (key for queue_keys in keys.values() for key in queue_keys):
            pipeline.llen(key)
        lengths = iter(pipeline.execute())
        return {queue: int(sum(next(lengths) for _ in queue_keys)) for queue, queue_keys in keys.items()}

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
    transport = {
        # How long a message stays with a worker that stopped renewing it (unacked_heartbeat.py).
        "visibility_timeout": worker.visibility_timeout_s,
        "unacked_index_key": UNACKED_INDEX_KEY,  # the sorted set the heartbeat renews: named here, not assumed
        "unacked_restore_interval": worker.unacked_restore_interval_s,
        # Scan for abandoned messages on every sweep, so recovery takes about one interval.
        "unacked_restore_throttle": 1,
        "global_keyprefix": broker_key_prefix(settings),
    }
    retry = {"max_retries": worker.max_retries, "retry_backoff_max": worker.retry_backoff_max_s}
    return {
        "broker_url": settings.redis_url,
        "result_backend": f"{BACKEND_PATH}+{settings.redis_url}",
        "broker_transport_options": {**transport, **_socket_timeouts(settings)},
        "result_backend_transport_options": {"global_keyprefix": broker_key_prefix(settings)},
        # Each wait on Redis ends within worker.redis_timeout_s (the API's copy of the settings: a short one).
        "redis_socket_timeout": worker.redis_timeout_s,
        "redis_socket_connect_timeout": connect_timeout_s(worker.redis_timeout_s),
        "broker_connection_timeout": connect_timeout_s(worker.redis_timeout_s),
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
            TASK_PLAYBACK: {"queue": QUEUE_INGEST},
            "videoseek.train.*": {"queue": QUEUE_TRAIN},
        },
        "task_annotations": {TASK_DECODE: retry, TASK_EMBED: retry},
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
    }


def _socket_timeouts(settings: Settings) -> dict[str, float]:
    """The broker's socket timeouts (kombu's default is none: a publish to a hung Redis would never end)."""
    timeout_s = settings.worker.redis_timeout_s
    return {"socket_timeout": timeout_s, "socket_connect_timeout": connect_timeout_s(timeout_s)}


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
    app.steps["worker"].add(UnackedHeartbeatStep)  # in every worker's main process (videoseek worker)
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

    worker_process_init.connect(started, weak=False, dispatch_uid="worker.process_init")
    worker_process_shutdown.connect(stopped, weak=False, dispatch_uid="worker.process_shutdown")
    worker_shutdown.connect(stopped, weak=False, dispatch_uid="worker.shutdown")
