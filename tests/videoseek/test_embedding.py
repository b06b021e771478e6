"""Frame embedding: shared batches across videos and adapters give each video exactly its own vectors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from ingest_helpers import make_adapter
from PIL import Image

from videoseek.collections import create_collection
from videoseek.embedding import EmbedRequest, FrameEmbedder, _batches, clip_vectors, preprocess_frames
from videoseek.ingest.pipeline import read_clip_plan
from videoseek.layout import DataLayout
from videoseek.runtime.embedded import EmbeddedRuntime
from videoseek.settings import Settings
from videoseek.store import SearchFilter
from videoseek.video import FrameCache


def _frames(seed: int, n: int, h: int, w: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_batches_cover_every_frame_once_in_order() -> None:
    requests = [EmbedRequest(np.zeros((n, 2, 2, 3), np.uint8), None) for n in (5, 0, 2, 4)]
    batches = _batches(requests, 3)
    assert [sum(b - a for _, a, b in batch) for batch in batches] == [3, 3, 3, 2]
    flat = [(k, i) for batch in batches for k, a, b in batch for i in range(a, b)]
    assert flat == [(k, i) for k, r in enumerate(requests) for i in range(len(r.frames))]


def test_tensor_preprocessing_matches_open_clip_transform(embedded: Settings) -> None:
    embedder = FrameEmbedder(embedded)
    clip = embedder.load()
    frames = _frames(0, 4, 90, 160)  # 16:9, needs resize + centre crop
    ours = preprocess_frames(clip, frames)
    reference = torch.stack([clip.preprocess(Image.fromarray(f)) for f in frames])
    assert ours.shape == reference.shape == (4, 3, clip.image_size, clip.image_size)
    # Bicubic on tensors vs PIL differs by rounding only; the embeddings agree.
    assert (ours - reference).abs().mean() < 0.05
    with torch.no_grad():
        a, b = clip.model.encode_image(ours), clip.model.encode_image(reference)
    assert torch.nn.functional.cosine_similarity(a, b).min() > 0.995


def test_mixed_batches_equal_per_video_embedding(embedded: Settings, tmp_path: Path) -> None:
    from videoseek.collections import install_adapter

    version = install_adapter(embedded, make_adapter(embedded, tmp_path / "adapter"))
    embedder = FrameEmbedder(embedded)
    a, b = _frames(1, 5, 64, 96), _frames(2, 4, 80, 80)  # different sizes in one batch
    embedder.batch_size = 3
    mixed = embedder.embed([EmbedRequest(a, version), EmbedRequest(b, None), EmbedRequest(a, None)])
    embedder.batch_size = 64
    alone = [embedder.embed([EmbedRequest(f, v)])[0] for f, v in ((a, version), (b, None), (a, None))]
    for got, want in zip(mixed, alone, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert not np.allclose(mixed[0], mixed[2], atol=1e-3)  # the adapter changed the vectors
    frames, pooled = clip_vectors(mixed[0], [0, 2, 4])
    np.testing.assert_allclose(pooled, mixed[0][[0, 2, 4]].mean(axis=0), rtol=1e-5)
    assert frames.shape == (3, mixed[0].shape[1])


def test_a_collection_with_an_adapter_is_indexed_through_it(
    embedded: Settings, runtime: EmbeddedRuntime, toy_videos: list[dict[str, Any]], tmp_path: Path
) -> None:
    info = create_collection(runtime.context, "adapted", make_adapter(embedded, tmp_path / "adapter"))
    assert info.adapter_version is not None
    layout = DataLayout(embedded.data_dir)
    assert (layout.adapter_dir(info.adapter_version) / "adapter.safetensors").is_file()
    runtime.start()
    result = runtime.submit_ingest("adapted", toy_videos[0]["path"])
    assert runtime.runner.join(60)
    job = runtime.context.jobs.get(result.job_id)
    assert job is not None and job.stage.value == "done"
    _, frames = FrameCache(layout.frames_dir("adapted")).get(job.video_id)
    plan = read_clip_plan(layout, "adapted", job.video_id)
    assert plan is not None
    embedder = FrameEmbedder(embedded)
    adapted = embedder.embed([EmbedRequest(frames, info.adapter_version)])[0]
    plain = embedder.embed([EmbedRequest(frames, None)])[0]
    store = runtime.context.store
    hits = store.search("adapted", adapted[0], 10, SearchFilter(video_ids=[job.video_id]), with_frames=True)
    for hit in hits:
        assert hit.payload["adapter_version"] == info.adapter_version
        indices = plan[hit.clip_index].frame_indices
        # frame vectors are stored in float16 (about 3 significant digits)
        np.testing.assert_allclose(hit.frames, adapted[indices], rtol=1e-3, atol=1e-3)
        assert not np.allclose(hit.frames, plain[indices], atol=1e-3)


@pytest.mark.parametrize("resize_mode", ["squash"])
def test_other_resize_modes_fall_back_to_open_clip(embedded: Settings, resize_mode: str) -> None:
    clip = FrameEmbedder(embedded).load()
    cfg = dict(clip.model.visual.preprocess_cfg)
    try:
        clip.model.visual.preprocess_cfg = {**cfg, "resize_mode": resize_mode}
        frames = _frames(3, 2, 50, 70)
        out = preprocess_frames(clip, frames)
        reference = torch.stack([clip.preprocess(Image.fromarray(f)) for f in frames])
        assert torch.equal(out, reference)
    finally:
        clip.model.visual.preprocess_cfg = cfg
