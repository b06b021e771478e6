"""The one place that decides where a process's background work runs, and wires the training package in.

Every program that submits or runs work (``serve``, ``ingest``, ``reindex``, ``demo``) builds its runtime
here, once, from the settings, and passes it down: with ``VIDEOSEEK_REDIS_URL`` set the work goes to Celery
workers (``worker/runtime.py``), otherwise it runs on threads of this process (``videoseek/runtime``). As the
composition root this module may import every part; the library, the API and the workers never do.
"""

from __future__ import annotations

from typing import Any

from videoseek.cancel import CancelCheck
from videoseek.context import PipelineContext
from videoseek.retraining import RetrainRequest
from videoseek.runtime.base import AdminWork, Progress, RunMode, Runtime
from videoseek.runtime.embedded import EmbeddedRuntime
from videoseek.settings import Settings


def run_mode(settings: Settings) -> RunMode:
    """Embedded without a Redis URL; distributed (Celery workers) with one."""
    return "embedded" if settings.redis_url is None else "distributed"


# One wording for every command that refuses distributed mode without a Qdrant server (`serve`, `worker`).
EMBEDDED_STORE_IN_DISTRIBUTED_MODE = (
    "VIDEOSEEK_REDIS_URL is set (distributed mode) but VIDEOSEEK_QDRANT__URL is not: Celery workers "
    "cannot share the embedded store. Set a Qdrant URL, or unset the Redis URL for embedded mode"
)


def distributed_store_problem(settings: Settings) -> str | None:
    """Why these settings cannot store vectors for many processes, or None when they can.

    An Edge store directory admits one process at a time, so distributed mode (Redis set: an API and any
    number of Celery workers) needs a Qdrant server; without one each worker would lock, or fork, the store.
    """
    if run_mode(settings) == "distributed" and not settings.qdrant.url:
        return EMBEDDED_STORE_IN_DISTRIBUTED_MODE
    return None


def training_work() -> AdminWork:
    """The retrain work of the training package, imported only when a retrain is checked or run, so an API
    process that never retrains loads none of it."""

    def check_retrain(context: PipelineContext, collection: str, request: RetrainRequest) -> None:
        from training.retrain import check_request

        check_request(context, collection, request)

    def retrain(
        context: PipelineContext,
        collection: str,
        request: RetrainRequest,
        progress: Progress,
        cancel: CancelCheck,
    ) -> dict[str, Any]:
        from training.retrain import retrain_collection

        return retrain_collection(context, collection, request, progress=progress, cancel=cancel)

    return AdminWork(check_retrain=check_retrain, retrain=retrain)


def open_api_runtime(settings: Settings) -> Runtime:
    """The runtime an API process serves on: short Redis timeouts (``worker.api_redis_timeout_s``), so a hung
    Redis costs a request a quick 503, never a blocked thread."""
    return open_runtime(settings.for_api())


def open_runtime(settings: Settings, *, queue_size: int | None = None) -> Runtime:
    """This process's runtime (not started). ``queue_size``: room in the embedded ingest queue."""
    if run_mode(settings) == "distributed":
        from worker.runtime import DistributedRuntime

        return DistributedRuntime(settings, training_work())
    return EmbeddedRuntime(settings, training_work(), queue_size=queue_size)
