"""The pipeline context of distributed mode: what every process of a deployment shares.

Redis holds the jobs, the training pairs and the collections' write locks, a Qdrant server the clips, and the data directory is a
volume every API replica and worker mounts. The API's runtime (``runtime.py``) and each worker process
(``process.py``) build one each.
"""

from __future__ import annotations

from videoseek.context import PipelineContext
from videoseek.embedding import FrameEmbedder
from videoseek.layout import DataLayout
from videoseek.settings import Settings
from videoseek.store import open_store
from worker.redis_client import redis_client
from worker.redis_jobs import RedisJobStore
from worker.redis_locks import RedisWriteLocks
from worker.redis_pairs import RedisPairStore


class WorkerConfigError(RuntimeError):
    """Distributed mode was asked for without what it needs (a Redis URL)."""


def redis_url_of(settings: Settings) -> str:
    """The deployment's Redis; ``WorkerConfigError`` with the fix when none is set."""
    if settings.redis_url is None:
        raise WorkerConfigError(
            "distributed mode needs VIDEOSEEK_REDIS_URL=redis://host:6379/0 (without it, work runs in-process)"
        )
    return settings.redis_url


def distributed_context(settings: Settings) -> PipelineContext:
    """The stores every process of a deployment shares: Redis jobs, pairs and locks, the Qdrant server."""
    url, worker = redis_url_of(settings), settings.worker
    prefix, timeout_s = worker.redis_prefix, worker.redis_timeout_s
    layout = DataLayout(settings.data_dir)
    return PipelineContext(
        settings=settings,
        layout=layout,
        jobs=RedisJobStore(url, prefix, client=redis_client(url, timeout_s, decode_responses=True)),
        pairs=RedisPairStore(url, prefix, client=redis_client(url, timeout_s, decode_responses=True)),
        locks=RedisWriteLocks(redis_client(url, timeout_s), prefix),
        embedder=FrameEmbedder(settings, layout),
        open_store=lambda: open_store(settings),
    )
