"""Helpers shared by the training tests (imported by name; fixtures live in conftest.py)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np

# Small enough to train in well under a second a step on one CPU core; equal depths so sharing applies.
TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


def write_video(
    path: Path, seconds: float, *, fps: int = 8, size: tuple[int, int] = (48, 32), level: int = 0
) -> Path:
    """A small MPEG-4 video whose frame brightness encodes the frame index (plus ``level``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(round(seconds * fps)):
            frame = np.full((height, width, 3), (level + 7 * i) % 256, dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def write_manifest(path: Path, rows: Sequence[dict[str, object] | str]) -> Path:
    """``rows`` as JSON lines (a str row is written verbatim, for malformed-line tests)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path
