"""What distributed mode keeps in Redis, per job and per training pair, measured on a real Redis.

    .venv/bin/python bench/redis_bytes.py [--redis redis://127.0.0.1:6379/0] [--n 2000]

Writes ``--n`` finished-upload jobs (with the metadata, problems and playback fields a real one carries) through
``RedisJobStore`` and ``--n`` captions through ``RedisPairStore``, under a scratch prefix, and reports Redis's own
``used_memory`` growth per record, beside the sum of ``MEMORY USAGE`` over the keys written. Everything is
deleted afterwards. Celery's own messages are not counted: a task message carries ids only (a few hundred bytes)
and leaves the queue when a worker acknowledges it, so the queue holds at most the backlog.

Prints one JSON object: ``{"jobs": {...}, "pairs": {...}}`` with ``used_memory_bytes_per_record`` and
``key_bytes_per_record`` for each. docs/scale.md uses it for what Redis holds at ten and a hundred million clips.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis

from videoseek.jobs import Job, JobStage
from videoseek.pairs import TrainingPair
from worker.redis_jobs import RedisJobStore
from worker.redis_pairs import RedisPairStore


def a_job(i: int) -> Job:
    return Job(
        job_id=uuid.uuid4().hex,
        collection="archive",
        video_id=f"{i:064x}",  # a content hash, as ingest names videos
        source=f"upload holiday-{i:05d}.mp4",
        video_file=f"{i:064x}.mp4",
        metadata={"camera": "pixel 8", "place": "lisbon"},
        stage=JobStage.DONE,
        progress=1.0,
        clips=120,  # a 10-minute video at the 5 s stride
        playback="original",
    )


def a_pair(i: int) -> TrainingPair:
    return TrainingPair(
        id=uuid.uuid4().hex,
        collection="archive",
        video_id=f"{i:064x}",
        kind="caption",
        text="a dog catches a frisbee on the beach while two children run after it",
        start_s=12.0,
        end_s=17.0,
        source="api",
    )


def measure(client: redis.Redis, prefix: str, n: int, write: Callable[[int], None]) -> dict[str, Any]:
    before = int(client.info("memory")["used_memory"])
    started = time.perf_counter()
    for i in range(n):
        write(i)
    seconds = time.perf_counter() - started
    after = int(client.info("memory")["used_memory"])
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    key_bytes = sum(int(client.memory_usage(k) or 0) for k in keys)
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])
    return {
        "records": n,
        "keys": len(keys),
        "used_memory_bytes_per_record": round((after - before) / n, 1),
        "key_bytes_per_record": round(key_bytes / n, 1),
        "writes_per_s": round(n / seconds, 1),
    }


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    client = redis.Redis.from_url(args.redis)
    jobs_prefix, pairs_prefix = f"bench-{uuid.uuid4().hex[:8]}:", f"bench-{uuid.uuid4().hex[:8]}:"
    jobs = RedisJobStore(args.redis, jobs_prefix)
    pairs = RedisPairStore(args.redis, pairs_prefix)
    return {
        "jobs": measure(client, jobs_prefix, args.n, lambda i: jobs.create(a_job(i))),
        "pairs": measure(client, pairs_prefix, args.n, lambda i: pairs.add([a_pair(i)])),
    }


if __name__ == "__main__":
    print(json.dumps(main()))
