"""JPEG thumbnails of clips, written atomically (a web server may be reading the old one)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image


def write_thumbnail(frame: np.ndarray, path: Path, max_side: int = 320, quality: int = 85) -> Path:
    """Save ``frame`` (uint8 [H, W, 3] RGB) as a JPEG at ``path``, shrunk so its longer side is at most
    ``max_side`` (never enlarged); parent directories are created. Returns ``path``."""
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[-1] != 3:
        raise ValueError(f"frame must be uint8 [H, W, 3], got {frame.dtype} {frame.shape}")
    if max_side < 1:
        raise ValueError(f"max_side must be >= 1, got {max_side!r}")
    image = Image.fromarray(frame, "RGB")
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            image.save(handle, format="JPEG", quality=quality)
        Path(tmp_name).replace(path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path
