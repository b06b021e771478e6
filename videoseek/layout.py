"""Where things live under the data directory.

In distributed mode the data directory is a volume shared by the API and every worker (uploads, frame cache,
thumbnails and adapter files are read by more than one process); vectors live in Qdrant, job state in Redis.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# Collection names become directory names and Qdrant collection names: keep them boring.
COLLECTION_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
VIDEO_ID_RE = re.compile(r"^[0-9a-f]{16,64}$")


class InvalidName(ValueError):
    """A collection name or video id that cannot be used safely as a path component."""


def check_collection_name(name: str) -> str:
    if not COLLECTION_NAME_RE.fullmatch(name):
        raise InvalidName(
            f"invalid collection name {name!r}: use 1-63 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return name


def check_video_id(video_id: str) -> str:
    if not VIDEO_ID_RE.fullmatch(video_id):
        raise InvalidName(f"invalid video id {video_id!r}: expected a lowercase hex digest")
    return video_id


@dataclass(frozen=True)
class DataLayout:
    """Paths under one data directory. Creating a layout touches nothing on disk."""

    root: Path

    @property
    def qdrant_dir(self) -> Path:
        return self.root / "qdrant"

    @property
    def adapters_dir(self) -> Path:
        return self.root / "adapters"

    def adapter_dir(self, version: str) -> Path:
        """Adapter files are content-addressed: the version is the sha256 of the file contents."""
        return self.adapters_dir / version

    def videos_dir(self, collection: str) -> Path:
        return self.root / "videos" / check_collection_name(collection)

    def frames_dir(self, collection: str) -> Path:
        return self.root / "frames" / check_collection_name(collection)

    def thumbnails_dir(self, collection: str, video_id: str) -> Path:
        return self.root / "thumbnails" / check_collection_name(collection) / check_video_id(video_id)

    @property
    def uploads_dir(self) -> Path:
        """Partial uploads land here first and are moved into videos/ once complete."""
        return self.root / "uploads"

    @property
    def jobs_db(self) -> Path:
        return self.root / "jobs.sqlite3"
