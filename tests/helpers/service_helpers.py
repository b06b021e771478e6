"""Helpers shared by the service tests (imported by conftest.py and the test files)."""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from service.main import create_app
from service.state import AppServices
from videoseek.adapter import AdaptedClip, AdapterConfig
from videoseek.cli.runtime import open_api_runtime
from videoseek.model_spec import ModelSpec
from videoseek.runtime.base import Runtime
from videoseek.settings import Settings, load_settings
from videoseek.store import ClipPoint, ClipStore
from videoseek.toy.model import register_toy_model_config

# The toy CLIP architecture with seeded random weights: these tests need vectors, not meaning (the e2e
# test uses the trained "toy" checkpoint).
TEST_MODEL = "videoseek-toy:random"
LOCAL = ("127.0.0.1", 50000)
CAPTIONS = [
    "a red ball bounces on the floor",
    "a blue cube slides to the left",
    "a green triangle spins slowly",
    "a yellow star falls from the top",
    "a purple circle grows bigger",
    "an orange square moves right",
]
FRAMES_PER_CLIP = 4
CLIPS_PER_VIDEO = 3
MATCHING_CLIP = 1  # in each seeded video, this clip holds the caption ...
MATCHING_FRAME = 2  # ... in this frame


def wait_ready(client: TestClient, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = client.get("/readyz")
        if response.status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError(f"app never became ready: {client.get('/readyz').json()}")


def services_of(client: TestClient) -> AppServices:
    services = client.app.state.services  # type: ignore[attr-defined]
    assert services is not None
    return services


def video_id(index: int) -> str:
    return f"{index:016x}"


def seed_clips(
    client: TestClient, collection: str, captions: list[str] = CAPTIONS, adapter_version: str | None = None
) -> dict[str, str]:
    """Upsert synthetic clips straight into the store: video i's clip 1, frame 2 carries caption i's embedding.

    Returns caption -> video id. Other frames are noise of a similar norm, so the text-conditioned pooling has
    to find the right frame for the right clip to rank first.
    """
    services = services_of(client)
    embeddings = services.model.encode(captions, [adapter_version] * len(captions))
    rng = np.random.default_rng(0)
    points = []
    for index, embedding in enumerate(embeddings):
        scale = float(np.linalg.norm(embedding))
        for clip_index in range(CLIPS_PER_VIDEO):
            frames = rng.standard_normal((FRAMES_PER_CLIP, embedding.shape[0])).astype(np.float32)
            frames *= scale / np.linalg.norm(frames, axis=1, keepdims=True)
            if clip_index == MATCHING_CLIP:
                frames[MATCHING_FRAME] = embedding
            start = clip_index * 5.0
            points.append(
                ClipPoint(
                    video_id=video_id(index),
                    clip_index=clip_index,
                    start_s=start,
                    end_s=start + 10.0,
                    pooled=frames.mean(axis=0),
                    frames=frames,
                    frame_times=[start + 2.5 * f for f in range(FRAMES_PER_CLIP)],
                    payload={
                        "source": f"video{index}.mp4",
                        "metadata": {"camera": "door" if index % 2 else "yard", "index": index},
                        "adapter_version": adapter_version,
                    },
                )
            )
    services.require_store().upsert(collection, points)
    return {caption: video_id(i) for i, caption in enumerate(captions)}


def settings_for(data_dir: Path, **overrides: Any) -> Settings:
    register_toy_model_config()  # makes "videoseek-toy" an open_clip model name
    values: dict[str, Any] = {"data_dir": data_dir, "model": TEST_MODEL, "device": "cpu"}
    values.update(overrides)
    return load_settings(**values)


def runtime_for(settings: Settings, store: ClipStore | None = None) -> Runtime:
    """The runtime ``videoseek serve`` would run the app on; ``store``: the clip store its processes share
    (a qdrant-client local store standing in for a Qdrant server)."""
    runtime = open_api_runtime(settings)
    if store is not None:
        runtime.context.open_store = lambda: store
    return runtime


def start_client(
    stack: ExitStack,
    settings: Settings,
    *,
    client: tuple[str, int] = LOCAL,
    raise_server_exceptions: bool = True,
    wait: bool = True,
    store: ClipStore | None = None,
) -> TestClient:
    """A TestClient with the app's lifespan running until ``stack`` closes (and ready, if ``wait``)."""
    test_client = TestClient(
        create_app(runtime_for(settings, store)),
        client=client,
        raise_server_exceptions=raise_server_exceptions,
    )
    stack.enter_context(test_client)
    if wait:
        wait_ready(test_client)
    return test_client


def make_adapter(directory: Path) -> Path:
    """A random (untrained) adapter for the test model, large enough to move embeddings visibly."""
    adapted = AdaptedClip.from_spec(
        ModelSpec.parse(TEST_MODEL), AdapterConfig(rank=4, shared_dim=8, init_std=0.2)
    )
    adapted.save(directory)
    return directory
