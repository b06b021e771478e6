"""Synthetic clips for the benchmarks, deterministic by position (every store and run gets the same ones).

Like real CLIP embeddings they are clustered, not uniform: a video's clips sit near the video's centre and a
clip's frames near the clip. Uniform random 512-d vectors are a worst case no ANN index meets (HNSW found 39%
of the exact top 40 on them at 100k clips), which measures the index's failure rather than the service.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from videoseek.store import ClipPoint

CLIPS_PER_VIDEO = 100


def unit_rows(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    x = rng.standard_normal(shape).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def video_centers(n: int, dim: int) -> np.ndarray:
    videos = max(1, -(-n // CLIPS_PER_VIDEO))
    return unit_rows(np.random.default_rng(7), (videos, dim))


def video_id(k: int) -> str:
    """The video of the k-th clip."""
    return f"{k // CLIPS_PER_VIDEO:016x}"


def clustered_clips(
    n: int, dim: int, frames: int, *, batch: int = 500, scale: float = 1.0
) -> Iterator[list[ClipPoint]]:
    """``n`` clips in batches, each batch regenerated from its own seed. ``scale`` multiplies every vector
    (the service stores projected features, which are not unit-norm)."""
    centers = video_centers(n, dim)
    for start in range(0, n, batch):
        rng = np.random.default_rng(start)
        size = min(batch, n - start)
        ks = np.arange(start, start + size)
        clip_vecs = unit_rows(rng, (size, dim)) * 0.8 + centers[ks // CLIPS_PER_VIDEO]
        frame_vecs = unit_rows(rng, (size, frames, dim)) * 0.5 + clip_vecs[:, None, :]
        frame_vecs /= np.linalg.norm(frame_vecs, axis=-1, keepdims=True)
        frame_vecs *= scale
        pooled = frame_vecs.mean(axis=1)
        points = []
        for i, k in enumerate(ks.tolist()):
            t0 = (k % CLIPS_PER_VIDEO) * 5.0
            points.append(
                ClipPoint(
                    video_id=video_id(k),
                    clip_index=k % CLIPS_PER_VIDEO,
                    start_s=t0,
                    end_s=t0 + 10.0,
                    pooled=pooled[i],
                    frames=frame_vecs[i],
                    frame_times=[t0 + f * 10.0 / frames for f in range(frames)],
                    payload={"source": f"v{k // CLIPS_PER_VIDEO}.mp4", "metadata": {"cam": f"c{k % 7}"}},
                )
            )
        yield points
