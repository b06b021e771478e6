"""Which errors an ingest task retries instead of failing its job, and how it retries them."""

from __future__ import annotations

import redis
from celery import Task
from celery.utils.time import get_exponential_backoff_interval
from kombu.exceptions import OperationalError

from videoseek.ingest.pipeline import TransientError, fail_job_quietly
from videoseek.store import StoreUnavailable
from worker.process import WorkerProcess


def transient_errors() -> tuple[type[Exception], ...]:
    """Errors a task retries with backoff instead of failing its job.

    The vector store being unreachable (the pipeline's ``TransientError``), and Redis, which holds the job
    state in distributed mode, dropping or timing out a connection (a restart, a failover, a network blip):
    the job is fine, only this attempt could not read or write it. Every step is idempotent, so a retry
    simply redoes it.
    """
    # OperationalError: the broker refused a message this task sends on (the next step's task). ReadOnlyError
    # and BusyLoadingError: a Redis failover in progress (the API answers 503 for them too).
    return (
        TransientError,
        StoreUnavailable,
        redis.ConnectionError,
        redis.TimeoutError,
        redis.exceptions.ReadOnlyError,
        redis.exceptions.BusyLoadingError,
        OperationalError,
    )


def retry_or_fail(task: Task, process: WorkerProcess, job_id: str, exc: Exception) -> None:
    """Retry a transient error with exponential backoff; once retries run out, fail the job."""
    if task.request.retries >= task.max_retries:
        reason = f"gave up after {task.request.retries} retries: {exc}"
        fail_job_quietly(process.context.jobs, process.layout, process.context.pairs, job_id, reason)
        return
    countdown = get_exponential_backoff_interval(
        factor=2, retries=task.request.retries, maximum=task.retry_backoff_max, full_jitter=True
    )
    raise task.retry(exc=exc, countdown=countdown)


def over_time(process: WorkerProcess, step: str) -> str:
    limit = process.settings.worker.task_soft_time_limit_s
    return f"{step} took longer than the {limit} s limit (VIDEOSEEK_WORKER__TASK_SOFT_TIME_LIMIT_S)"
