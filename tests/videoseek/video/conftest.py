"""Fixtures of the video tests: tiny real videos generated once per session (see tests/helpers/video_factory.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from video_factory import write_video

VideoFactory = Callable[..., Path]


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("videos")


@pytest.fixture(scope="session")
def make_video(video_dir: Path) -> VideoFactory:
    """``make_video(name, **write_video_kwargs)``: generated once per session under ``name``."""

    def make(name: str, **kwargs: object) -> Path:
        path = video_dir / name
        if not path.exists():
            write_video(path, **kwargs)  # type: ignore[arg-type]
        return path

    return make


@pytest.fixture(scope="session")
def h264_mp4(make_video: VideoFactory) -> Path:
    """3 s, 10 fps, 64x48 H.264 MP4 (frames 0..29)."""
    return make_video("base.mp4")
