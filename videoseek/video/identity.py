"""Content identity of an uploaded file: the same bytes are the same video, whatever the file name."""

from __future__ import annotations

import hashlib
from pathlib import Path


def video_id_for_file(path: Path) -> str:
    """sha256 of the file's bytes as 64 lowercase hex digits, read in chunks (never whole into memory)."""
    with Path(path).open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
