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
_EXT_RE = re.compile(r"^\.[a-z0-9]{1,10}$")


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
    """Every path under one data directory, defined once. Creating a layout touches nothing on disk."""

    root: Path

    @property
    def qdrant_dir(self) -> Path:
        """The embedded Qdrant Edge store (unless ``VIDEOSEEK_QDRANT__PATH`` puts it elsewhere)."""
        return self.root / "qdrant"

    @property
    def adapters_dir(self) -> Path:
        return self.root / "adapters"

    def adapter_dir(self, version: str) -> Path:
        """Adapter files are content-addressed: the version is the sha256 of the file contents."""
        return self.adapters_dir / version

    def videos_dir(self, collection: str) -> Path:
        return self.root / "videos" / check_collection_name(collection)

    def video_file(self, collection: str, video_id: str) -> Path | None:
        """The stored copy of a video (``videos/<collection>/<video_id><ext>``), if it exists."""
        directory = self.videos_dir(collection)
        if not directory.is_dir():
            return None
        for candidate in sorted(directory.glob(f"{check_video_id(video_id)}.*")):
            if candidate.is_file() and not candidate.name.startswith("."):
                return candidate
        return None

    def playback_dir(self, collection: str) -> Path:
        return self.root / "playback" / check_collection_name(collection)

    def playback_file(self, collection: str, video_id: str) -> Path:
        """The browser-playable copy (H.264 in MP4) of a video whose upload browsers cannot play, written
        after the video is indexed."""
        return self.playback_dir(collection) / f"{check_video_id(video_id)}.mp4"

    def example_queries(self, collection: str) -> Path:
        """Queries the web page offers for a collection (``videoseek/examples.py``)."""
        return self.root / "examples" / f"{check_collection_name(collection)}.json"

    def frames_dir(self, collection: str) -> Path:
        return self.root / "frames" / check_collection_name(collection)

    def collection_thumbnails_dir(self, collection: str) -> Path:
        return self.root / "thumbnails" / check_collection_name(collection)

    def thumbnails_dir(self, collection: str, video_id: str) -> Path:
        """A video's clip thumbnails (:meth:`thumbnail`), and its clip plan beside them."""
        return self.collection_thumbnails_dir(collection) / check_video_id(video_id)

    def thumbnail(self, collection: str, video_id: str, clip_index: int) -> Path:
        """One clip's thumbnail JPEG."""
        return self.root / thumbnail_relpath(collection, video_id, clip_index)

    def clip_plan(self, collection: str, video_id: str) -> Path:
        """The clips a video was cut into when decoded (the embed step and re-indexing read it)."""
        return self.thumbnails_dir(collection, video_id) / "clips.json"

    @property
    def uploads_dir(self) -> Path:
        """Partial uploads land here first and are moved into videos/ once complete."""
        return self.root / "uploads"

    @property
    def jobs_db(self) -> Path:
        """Ingest jobs of embedded mode (SQLite)."""
        return self.root / "jobs.sqlite3"

    @property
    def pairs_db(self) -> Path:
        """Training pairs of embedded mode (SQLite; its own file: see ``videoseek/pairs_sqlite.py``)."""
        return self.root / "pairs.sqlite3"

    @property
    def locks_dir(self) -> Path:
        """Per-collection write locks of embedded mode (``flock``)."""
        return self.root / "locks"

    @property
    def server_secret(self) -> Path:
        """The key that signs media URLs and search cursors."""
        return self.root / "secrets" / "server.key"

    def training_runs_dir(self, collection: str) -> Path:
        """Retrain runs of a collection (report, plots, checkpoint), one folder per run."""
        return self.root / "training" / check_collection_name(collection)

    @property
    def training_frames_dir(self) -> Path:
        """Frames decoded for training, shared by every run (``training/frame_cache.py``)."""
        return self.root / "cache" / "training-frames"


def thumbnail_relpath(collection: str, video_id: str, clip_index: int) -> str:
    """A clip thumbnail's path relative to the data directory (what a point's payload stores)."""
    return f"thumbnails/{check_collection_name(collection)}/{check_video_id(video_id)}/{int(clip_index)}.jpg"


def stored_suffix(source_name: str) -> str:
    """The extension kept on a video's stored copy (players and the media server like one); ``.bin`` if odd."""
    suffix = Path(source_name).suffix.lower()
    return suffix if _EXT_RE.fullmatch(suffix) else ".bin"
