"""Small, deterministic clips for the store tests (shared by the test_store_* files)."""

from __future__ import annotations

import zlib

import numpy as np

from videoseek.store import ClipPoint

DIM = 8


def unit(seed: int, dim: int = DIM) -> np.ndarray:
    vec = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return vec / np.linalg.norm(vec)


def clip(
    video_id: str,
    index: int,
    *,
    seed: int | None = None,
    start: float | None = None,
    metadata: dict[str, object] | None = None,
    frames: int = 3,
    dim: int = DIM,
) -> ClipPoint:
    seed = zlib.crc32(f"{video_id}:{index}".encode()) % 10_000 if seed is None else seed
    start = index * 5.0 if start is None else start
    frame_vecs = np.stack([unit(seed * 100 + f, dim) * (f + 1) for f in range(frames)])  # not unit-norm
    return ClipPoint(
        video_id=video_id,
        clip_index=index,
        start_s=start,
        end_s=start + 10.0,
        pooled=unit(seed, dim),
        frames=frame_vecs,
        frame_times=[start + f for f in range(frames)],
        payload={"source": f"{video_id}.mp4", "metadata": metadata or {}, "adapter_version": "a1"},
    )
