"""How the Edge store lays out its shards, and how a shard's stored layout is read back.

New versions get :func:`edge_config` (the shard every query walks) and :func:`frames_config` (their frames);
:func:`combined_edge_config` and :func:`legacy_edge_config` are the one-shard layouts of versions made before,
which keep serving as they are and which tests and ``bench/scale.py --layout`` still make.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from videoseek.store.base import POOLED_INT8_QUANTILE, VECTOR_FRAMES, VECTOR_POOLED, frames_maxsim

EDGE_CONFIG_FILE = "edge_config.json"  # where Edge keeps a shard's layout


def _pooled_params(dim: int, *, cold: bool) -> qe.EdgeVectorParams:
    """Cosine, an HNSW graph over an int8 copy pinned in RAM; ``cold``: the float originals on disk."""
    placement: dict[str, Any] = {"memory": qe.Memory.Cold} if cold else {}
    return qe.EdgeVectorParams(
        size=dim,
        distance=qe.Distance.Cosine,
        quantization_config=qe.ScalarQuantizationConfig(
            type=qe.ScalarType.Int8, quantile=POOLED_INT8_QUANTILE, memory=qe.Memory.Pinned
        ),
        **placement,
    )


def _frames_params(dim: int, *, half_on_disk: bool) -> qe.EdgeVectorParams:
    """A MaxSim multivector with no graph, read back for re-ranking only; ``half_on_disk``: float16, on disk.

    Dot, not Cosine: Cosine would normalise on write and get_frames must return what was stored (to float16
    precision, which moved no toy-world R@1 through /search: docs/benchmarks.md). m=0: no graph is ever
    searched on frames, and building one made optimizing ~20x slower.
    """
    placement: dict[str, Any] = (
        {"datatype": qe.VectorStorageDatatype.Float16, "memory": qe.Memory.Cold} if half_on_disk else {}
    )
    return qe.EdgeVectorParams(
        size=dim,
        distance=qe.Distance.Dot,
        multivector_config=qe.MultiVectorConfig(qe.MultiVectorComparator.MaxSim),
        hnsw_config=qe.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10_000),
        **placement,
    )


def edge_config(dim: int) -> qe.EdgeConfig:
    """Layout of a new version's main shard (issue 17): only what every query walks, and that in few segments.

    * pooled: the int8 copy the HNSW walk reads pinned in RAM, the float originals on disk (memory-mapped,
      ``Cold``), read only to rescore the few candidates the int8 walk found;
    * payloads on disk (``Cold``); payload indexes only on the fields filters use (``BASE_PAYLOAD_INDEXES`` and
      the metadata keys, see :meth:`EdgeClipStore._ensure_metadata_indexes`);
    * no frames: they live in a shard of their own (:func:`frames_config`), read by id for re-ranking.

    Why apart: Edge's optimizer caps a segment at about 700 MB of vectors and a query walks every segment. With
    12 float16 frames beside it a segment held about 37k clips (a million clips' p50 was about 9x the 20k one);
    without them it holds about 260k (4.4x; measured with ``bench/scale.py``, docs/benchmarks.md "Frames in a
    shard of their own"). A config that does carry ``frames`` (:func:`combined_edge_config`,
    :func:`legacy_edge_config`) makes a one-shard version, as versions made before the split are.
    Only new versions get this layout: an existing shard keeps the one it was created with (Edge stores it
    beside the shard), and a re-index makes a new version.
    """
    return qe.EdgeConfig(
        vectors={VECTOR_POOLED: _pooled_params(dim, cold=True)}, payload_memory=qe.Memory.Cold
    )


def frames_config(dim: int) -> qe.EdgeConfig:
    """Layout of a version's frames shard: float16 frames on disk, and ``video_id`` so a video's frames can be
    deleted with it."""
    return qe.EdgeConfig(
        vectors={VECTOR_FRAMES: _frames_params(dim, half_on_disk=True)}, payload_memory=qe.Memory.Cold
    )


def combined_edge_config(dim: int) -> qe.EdgeConfig:
    """The first layout of issue 17: :func:`edge_config`'s pooled and :func:`frames_config`'s frames in one
    shard. Its shards still open and serve; kept so tests and ``bench/scale.py --layout combined`` can make one.

    Measured with ``bench/scale.py``: 2.6 KB of RSS and 17.5 KB of disk per clip at 20k clips, 994 B and
    15.5 KB at a million, against 34 KB and 30 KB at 20k in :func:`legacy_edge_config`'s layout.
    """
    return qe.EdgeConfig(
        vectors={
            VECTOR_POOLED: _pooled_params(dim, cold=True),
            VECTOR_FRAMES: _frames_params(dim, half_on_disk=True),
        },
        payload_memory=qe.Memory.Cold,
    )


def legacy_edge_config(dim: int) -> qe.EdgeConfig:
    """The layout shards created before issue 17 have (float32 frames and pooled vectors held in RAM).

    Such shards still open and serve as they are (:meth:`EdgeClipStore._load` never passes a config, so Edge
    keeps the one stored with the shard); kept here so tests and ``bench/scale.py --layout legacy`` can make one.
    """
    return qe.EdgeConfig(
        vectors={
            VECTOR_POOLED: _pooled_params(dim, cold=False),
            VECTOR_FRAMES: _frames_params(dim, half_on_disk=False),
        }
    )


def shard_layout(shard_dir: Path) -> dict[str, Any]:
    """The layout a shard was created with, as Edge stored it beside the shard (``edge_config.json``).

    Edge has no call that returns a shard's config; this file is what ``EdgeShard.load`` reads it from.
    """
    return dict(json.loads((shard_dir / EDGE_CONFIG_FILE).read_text()))


def layout_frames_maxsim(layout: dict[str, Any]) -> bool:
    """Whether a shard's stored layout (:func:`shard_layout`) lets ``frames`` re-score a prefetch by MaxSim."""
    frames = layout.get("vectors", {}).get(VECTOR_FRAMES, {})
    comparator = (frames.get("multivector_config") or {}).get("comparator")
    return frames_maxsim(comparator, frames.get("distance"))
