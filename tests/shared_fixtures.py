"""Fixtures many test packages share (a plugin of the root conftest): a private Redis namespace, the toy CLIP and
its videos, embedded and distributed settings, an embedded runtime and its pipeline context."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from videoseek.settings import Settings

if TYPE_CHECKING:
    from videoseek.context import PipelineContext
    from videoseek.runtime.embedded import EmbeddedRuntime

REDIS_TEST_DB = 13
REDIS_TEST_URL = f"redis://127.0.0.1:6379/{REDIS_TEST_DB}"


def _redis_or_skip() -> Any:
    import redis

    client = redis.Redis.from_url(REDIS_TEST_URL, decode_responses=True, socket_connect_timeout=1.0)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    return client


@pytest.fixture
def redis_url() -> str:
    """The test Redis database (skips when Redis is not running)."""
    _redis_or_skip().close()
    return REDIS_TEST_URL


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix no other test uses; every key under it is deleted afterwards."""
    client = _redis_or_skip()
    prefix = f"videoseek-test-{uuid.uuid4().hex[:8]}:"
    yield prefix
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(scope="session")
def model_spec() -> str:
    """The toy CLIP (small, trained): what every worker test embeds with."""
    from videoseek.toy.model import toy_checkpoint_path

    if not toy_checkpoint_path().is_file():
        pytest.skip("toy CLIP checkpoint missing (videoseek toy pretrain)")
    return "toy"


@pytest.fixture(scope="session")
def toy_videos(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, object]]:
    """Three 12 s generated H.264 toy videos (domain A: scenes the toy CLIP knows without an adapter) with
    their captions (manifest records plus the absolute ``path``)."""
    import json

    from videoseek.toy.generate import generate_videos

    out = tmp_path_factory.mktemp("toy-videos")
    manifest = generate_videos(out, 3, seed=11, domain="A", durations_s=[12])
    records = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    for record in records:
        record["path"] = out / str(record["video"])
    return records


@pytest.fixture
def embedded(model_spec: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Embedded-mode settings on a fresh data dir with the toy model (also in the processes a test starts)."""
    from videoseek.settings import get_settings

    monkeypatch.setenv("VIDEOSEEK_MODEL", model_spec)
    monkeypatch.setenv("VIDEOSEEK_DEVICE", "cpu")
    get_settings.cache_clear()
    return get_settings()


@pytest.fixture
def runtime(embedded: Settings) -> Iterator[EmbeddedRuntime]:
    """An embedded runtime on those settings, not started (``runtime.start()`` starts its ingest threads);
    stopped and its stores closed after the test."""
    from videoseek.cli.runtime import training_work
    from videoseek.runtime.embedded import EmbeddedRuntime

    runtime = EmbeddedRuntime(embedded, training_work())
    yield runtime
    runtime.close()


@pytest.fixture
def ctx(runtime: EmbeddedRuntime) -> PipelineContext:
    """The embedded runtime's pipeline context: its stores and image tower."""
    return runtime.context


def _distributed(
    monkeypatch: pytest.MonkeyPatch, model_spec: str, redis_url: str, redis_prefix: str, **env: str
) -> Iterator[Settings]:
    """Distributed-mode settings in this process and in the workers it starts (through the environment)."""
    from videoseek.settings import get_settings

    base = {
        "VIDEOSEEK_MODEL": model_spec,
        "VIDEOSEEK_DEVICE": "cpu",
        "VIDEOSEEK_REDIS_URL": redis_url,
        "VIDEOSEEK_WORKER__REDIS_PREFIX": redis_prefix,
        # A dead worker's task comes back after 3 s, looked for every second.
        "VIDEOSEEK_WORKER__VISIBILITY_TIMEOUT_S": "3",
        "VIDEOSEEK_WORKER__UNACKED_RESTORE_INTERVAL_S": "1",
        "OMP_NUM_THREADS": "1",
    }
    for key, value in {**base, **env}.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    yield get_settings()


@pytest.fixture
def distributed(
    model_spec: str, redis_url: str, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """Distributed mode with slow embedding: one frame per forward pass, 8 frames per second, so that a worker
    can be caught (and killed) mid-embedding."""
    yield from _distributed(
        monkeypatch,
        model_spec,
        redis_url,
        redis_prefix,
        VIDEOSEEK_WORKER__EMBED_BATCH_SIZE="1",
        VIDEOSEEK_INGEST__SAMPLE_FPS="8",
    )


@pytest.fixture
def distributed_defaults(
    model_spec: str, redis_url: str, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """Distributed mode with the default sampling and batch sizes."""
    yield from _distributed(monkeypatch, model_spec, redis_url, redis_prefix)


@pytest.fixture
def distributed_patient(
    model_spec: str, redis_url: str, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """Distributed mode with a 6 s visibility timeout, renewed every 1.2 s: a task can be held for several
    timeouts, and a slow machine still has room between a worker's beats."""
    yield from _distributed(
        monkeypatch, model_spec, redis_url, redis_prefix, VIDEOSEEK_WORKER__VISIBILITY_TIMEOUT_S="6"
    )
