"""Encoding RGB frames into real video files with PyAV, for any of a few codec/container pairs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


@dataclass(frozen=True)
class CodecChoice:
    """How a user-facing codec name maps onto an FFmpeg encoder."""

    encoder: str
    pix_fmt: str
    default_container: str
    options: tuple[tuple[str, str], ...] = ()


# Single-threaded encoders with fixed settings so the same frames give the same bytes.
CODECS: dict[str, CodecChoice] = {
    "h264": CodecChoice(
        "libx264", "yuv420p", "mp4", (("preset", "veryfast"), ("crf", "23"), ("threads", "1"))
    ),
    "hevc": CodecChoice(
        "libx265",
        "yuv420p",
        "mp4",
        (("preset", "veryfast"), ("x265-params", "log-level=none:pools=none:frame-threads=1")),
    ),
    "vp9": CodecChoice(
        "libvpx-vp9",
        "yuv420p",
        "webm",
        (("crf", "32"), ("b", "0"), ("threads", "1"), ("deadline", "realtime")),
    ),
    "vp8": CodecChoice("libvpx", "yuv420p", "webm", (("crf", "10"), ("b", "1M"), ("threads", "1"))),
    "mpeg4": CodecChoice("mpeg4", "yuv420p", "avi", (("qscale", "3"),)),
    "mjpeg": CodecChoice("mjpeg", "yuvj420p", "avi", (("qscale", "3"),)),
    "av1": CodecChoice("libsvtav1", "yuv420p", "mkv", (("preset", "10"), ("svtav1-params", "lp=1"))),
}
CODEC_ALIASES = {
    "libx264": "h264",
    "avc": "h264",
    "h265": "hevc",
    "libx265": "hevc",
    "libvpx-vp9": "vp9",
    "xvid": "mpeg4",
}
CONTAINERS = ("mp4", "webm", "avi", "mkv", "mov")


class UnsupportedVideoFormat(ValueError):
    """A codec or codec/container pair this writer cannot produce."""


def resolve_codec(codec: str, container: str | None) -> tuple[CodecChoice, str]:
    name = CODEC_ALIASES.get(codec.lower(), codec.lower())
    if name not in CODECS:
        raise UnsupportedVideoFormat(f"unknown codec {codec!r}; choose one of {sorted(CODECS)}")
    choice = CODECS[name]
    container = (container or choice.default_container).lower().lstrip(".")
    if container not in CONTAINERS:
        raise UnsupportedVideoFormat(f"unknown container {container!r}; choose one of {list(CONTAINERS)}")
    if container == "webm" and name not in ("vp8", "vp9", "av1"):
        raise UnsupportedVideoFormat(
            f"webm holds only vp8, vp9 or av1, not {name}; use mp4/mkv or another codec"
        )
    return choice, container


def write_video(
    path: Path, frames: Iterable[np.ndarray], fps: int, codec: str = "h264", container: str | None = None
) -> Path:
    """Encode uint8 HxWx3 frames (even width and height) into ``path``; returns the path written.

    ``container`` defaults to the codec's usual one; ``path``'s suffix is not consulted, so callers name files
    as they like.
    """
    choice, container = resolve_codec(codec, container)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "matroska" if container == "mkv" else container
    # bitexact: no random segment UIDs or encoder version strings, so equal frames give equal bytes.
    with av.open(str(path), mode="w", format=fmt, options={"fflags": "+bitexact"}) as output:
        stream = output.add_stream(choice.encoder, rate=Fraction(fps, 1))
        assert isinstance(stream, av.VideoStream)  # a video encoder always gives a video stream
        stream.pix_fmt = choice.pix_fmt
        stream.options = dict(choice.options)
        started = False
        for frame in frames:
            if not started:
                height, width = frame.shape[:2]
                if height % 2 or width % 2:
                    raise UnsupportedVideoFormat(
                        f"frame size {width}x{height} must be even for {choice.pix_fmt}"
                    )
                stream.width, stream.height = width, height
                started = True
            for packet in stream.encode(
                av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            ):
                output.mux(packet)
        if not started:
            raise ValueError("write_video needs at least one frame")
        for packet in stream.encode():
            output.mux(packet)
    return path
