"""Open a media file safely and describe its video stream; refuse what is over the limits before decoding.

Opening is hardened for untrusted uploads: only a whitelist of plain file demuxers is allowed (no playlists
such as HLS or concat that would make FFmpeg read other files), only the ``file`` protocol, and the decoders
FFmpeg runs while probing stream parameters are capped at ``max_pixels`` so a header claiming 16000x16000
cannot make them allocate gigabytes. Encrypted (DRM) video is refused here too (see ``encryption``): FFmpeg
would decode it, to noise. Raw H.264/H.265 streams are opened with the demuxer their name gives.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import av
import av.logging
from av.container import InputContainer
from av.stream import Disposition
from av.video.stream import VideoStream

from videoseek.settings import IngestSettings
from videoseek.video.encryption import refuse_encrypted_packet, refuse_encrypted_stream
from videoseek.video.errors import (
    NotMedia,
    NoVideoStream,
    TooLarge,
    TooLong,
    TooManyPixels,
    UnsupportedCodec,
)

# Demuxers of self-contained files. Anything else (hls, concat, image2 patterns, tty, raw images...) is refused.
# Audio-only containers are listed so that an MP3 is reported as "no video stream" rather than "not media".
ALLOWED_DEMUXERS = (
    "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,gif,apng,mpegts,mpeg,flv,ivf,asf,ogg,nut,mxf,dv,rm,"
    "h264,hevc,m4v,mpegvideo,h263,vc1,obu,av1,yuv4mpegpipe,wtv,mp3,wav,flac,aac,aiff,w64"
)
SUPPORTED_FORMATS_HINT = "MP4/MOV, MKV/WebM, AVI, MPEG-TS/PS, GIF, FLV, OGG, WMV, IVF, raw .h264/.hevc"

# Raw Annex-B elementary streams: no container names them, and FFmpeg's content probe misses valid ones (an
# H.264 stream carrying MVC or SVC extension NAL units scores 0 and is "invalid data"). A file named like one
# whose bytes start like one is opened with its demuxer named; anything else is probed by content as usual.
RAW_STREAM_DEMUXERS = {".264": "h264", ".h264": "h264", ".265": "hevc", ".h265": "hevc", ".hevc": "hevc"}
RAW_STREAM_FORMATS = frozenset(RAW_STREAM_DEMUXERS.values())

_PIXEL_LIMIT_LOG = re.compile(r"Picture size (\d+)x(\d+) exceeds")


@dataclass(frozen=True)
class StreamInfo:
    """One stream of the container, as the demuxer declares it."""

    index: int
    type: str
    codec: str | None
    width: int = 0
    height: int = 0
    attached_pic: bool = False


@dataclass(frozen=True)
class VideoInfo:
    """What the headers say about a file and its chosen video stream (nothing here required decoding video).

    ``rotation`` is the counter-clockwise angle (0/90/180/270) to turn stored frames by for display;
    ``width``/``height`` are the stored size, ``display_width``/``display_height`` the size after rotation
    and non-square pixels. ``duration_s`` is the best estimate from the headers, which may lie; the sampler
    reports what actually decoded.
    """

    size_bytes: int
    container_format: str
    streams: tuple[StreamInfo, ...]
    video_stream_index: int
    duration_s: float
    frame_rate: float | None
    width: int
    height: int
    rotation: int
    codec: str
    pix_fmt: str | None
    has_audio: bool
    frame_count: int
    start_time_s: float
    sample_aspect_ratio: float = 1.0

    @property
    def display_width(self) -> int:
        width = round(self.width * self.sample_aspect_ratio)
        return self.height if self.rotation % 180 else width

    @property
    def display_height(self) -> int:
        width = round(self.width * self.sample_aspect_ratio)
        return width if self.rotation % 180 else self.height


def normalize_rotation(degrees: float | None) -> int:
    """FFmpeg's display-matrix angle (counter-clockwise, may be negative or not a right angle) -> 0/90/180/270."""
    if degrees is None or not math.isfinite(degrees):
        return 0
    return (round(degrees / 90.0) * 90) % 360


class _ErrorLogSwitch:
    """Reference-counted switch of PyAV's log bridge to ERROR level, safe across threads.

    PyAV's log bridge can deadlock with frame-threaded decoding, so it is on only while some thread is
    opening a file (FFmpeg probes with a single thread) and the previous settings come back when the last
    opener is done. While on, PyAV's "skip repeated" filter is off: it compares each line with the last
    line from *any* thread, so two threads refusing the same 16000x16000 header would see only one line.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._previous_level: int | None = None
        self._previous_skip_repeated = True

    def __enter__(self) -> None:
        with self._lock:
            if self._users == 0:
                self._previous_level = av.logging.get_level()
                self._previous_skip_repeated = av.logging.get_skip_repeated()
                if self._previous_level is None or self._previous_level < av.logging.ERROR:
                    av.logging.set_level(av.logging.ERROR)
                av.logging.set_skip_repeated(False)
            self._users += 1

    def __exit__(self, *_exc: object) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0:
                av.logging.set_level(self._previous_level)
                av.logging.set_skip_repeated(self._previous_skip_repeated)


_ERROR_LOG_SWITCH = _ErrorLogSwitch()


@contextmanager
def _ffmpeg_error_log() -> Iterator[list[tuple[int, str, str]]]:
    """Capture this thread's FFmpeg error lines (they name e.g. the true frame size of refused headers)."""
    with _ERROR_LOG_SWITCH, av.logging.Capture(local=True) as logs:
        yield logs


@contextmanager
def open_media(path: Path, limits: IngestSettings) -> Iterator[tuple[InputContainer, list[str]]]:
    """Open ``path`` for reading with the hardened options; yields the container and FFmpeg's error lines.

    Raises ``NotMedia`` for empty or unreadable files and ``TooLarge`` over ``max_file_bytes``.
    """
    path = Path(path)
    size = path.stat().st_size  # a missing file is the caller's bug, not a property of the upload
    if size == 0:
        raise NotMedia("the file is empty (0 bytes)")
    if size > limits.max_file_bytes:
        raise TooLarge(
            f"the file is {_mib(size)}, over the {_mib(limits.max_file_bytes)} limit "
            "(raise VIDEOSEEK_INGEST__MAX_FILE_BYTES to accept it)"
        )
    options = {
        "format_whitelist": ALLOWED_DEMUXERS,
        "protocol_whitelist": "file",
        "max_pixels": str(limits.max_pixels),
    }
    demuxer = raw_stream_demuxer(path)
    with _ffmpeg_error_log() as logs:
        try:
            container = av.open(
                str(path), mode="r", format=demuxer, options=options, metadata_errors="replace"
            )
        except (av.FFmpegError, UnicodeDecodeError) as exc:
            raise NotMedia(
                "this is not a video file that can be read: unrecognised, unsupported or corrupt format "
                f"(supported: {SUPPORTED_FORMATS_HINT}; FFmpeg said: {_short(exc, hide=path)})"
            ) from exc
        messages = [message.strip() for _level, _name, message in logs]
    try:
        yield container, messages
    finally:
        container.close()


def raw_stream_demuxer(path: Path) -> str | None:
    """The demuxer to name for a raw H.264/H.265 stream (by its suffix, when it starts with a start code)."""
    demuxer = RAW_STREAM_DEMUXERS.get(path.suffix.lower())
    if demuxer is None:
        return None
    with path.open("rb") as handle:
        head = handle.read(64)
    return demuxer if _starts_with_start_code(head) else None


def _starts_with_start_code(head: bytes) -> bool:
    """Annex-B: zero bytes, then 01 and a NAL header whose forbidden bit is clear. MPEG-PS and MPEG video start
    codes (BA, B3) have that bit set; an MP4 whose first box has a 64-bit size (00 00 00 01 ftyp) is excluded
    by its box type."""
    zeros = len(head) - len(head.lstrip(b"\x00"))
    if zeros < 2 or zeros + 1 >= len(head) or head[zeros] != 1:
        return False
    return not head[zeros + 1] & 0x80 and head[4:8] != b"ftyp"


def describe(container: InputContainer, limits: IngestSettings, path: Path, log: list[str]) -> VideoInfo:
    """Choose the video stream and check the limits from the headers alone (``rotation`` is left at 0).

    Raises ``EncryptedContent`` for an encrypted video stream: it would decode, to noise.
    """
    streams = tuple(_stream_info(s) for s in container.streams)
    stream = choose_video_stream(container)
    refuse_encrypted_stream(path, container, stream)
    width, height = _declared_size(stream, log)
    _check_pixels(width, height, limits)
    duration_s = _duration_estimate(container, stream)
    _check_duration(duration_s, limits)
    rate = _frame_rate(container, stream)
    sar = stream.sample_aspect_ratio
    return VideoInfo(
        size_bytes=path.stat().st_size,
        container_format=container.format.name,
        streams=streams,
        video_stream_index=stream.index,
        duration_s=duration_s,
        frame_rate=rate,
        width=width,
        height=height,
        rotation=0,
        codec=stream.codec_context.name,
        pix_fmt=stream.codec_context.pix_fmt,
        has_audio=any(s.type == "audio" for s in container.streams),
        frame_count=max(int(stream.frames or 0), 0),
        start_time_s=_start_time(container, stream),
        sample_aspect_ratio=float(sar) if sar and 0.1 < sar < 10 else 1.0,
    )


def probe(path: Path, limits: IngestSettings) -> VideoInfo:
    """Describe ``path``'s video stream, or raise a ``MediaRejected`` subclass saying why it is refused.

    Limits are checked from the headers first; only a file within them has its first frame decoded, to
    read the display-matrix rotation that FFmpeg attaches to decoded frames. A raw H.264/H.265 stream, which
    declares no duration, is then measured by demuxing its packets (no decoding).
    """
    path = Path(path)
    with open_media(path, limits) as (container, log):
        info = describe(container, limits, path, log)
        rotation = _first_frame_rotation(container, chosen_stream(container, info), limits)
    info = replace(info, rotation=rotation)
    if info.container_format in RAW_STREAM_FORMATS:
        info = _with_measured_length(path, info, limits)
    return info


def _with_measured_length(path: Path, info: VideoInfo, limits: IngestSettings) -> VideoInfo:
    """A raw stream declares no duration: add up its packets' durations (the parser's, from the SPS timing or
    FFmpeg's 25 fps default), demuxing without decoding, and stop as soon as it is over the limit."""
    ticks = frames = 0
    with open_media(path, limits) as (container, _):
        stream = chosen_stream(container, info)
        time_base = stream.time_base
        if time_base is None:
            return info
        default_ticks = round(1 / (info.frame_rate or 25.0) / time_base)
        limit_ticks = limits.max_duration_s / time_base
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue  # the end-of-stream marker
                frames += 1
                ticks += packet.duration or default_ticks
                if ticks > limit_ticks:
                    _check_duration(float(ticks * time_base), limits, at_least=True)
        except av.FFmpegError:
            pass  # damaged: what was readable counts; the decoder meets the same damage and reports it
    return replace(info, duration_s=float(ticks * time_base), frame_count=frames)


def chosen_stream(container: InputContainer, info: VideoInfo) -> VideoStream:
    """The stream :func:`describe` chose, from the same open container."""
    stream = container.streams[info.video_stream_index]
    if not isinstance(stream, VideoStream):
        raise TypeError(f"stream {info.video_stream_index} is {stream.type}, not the video stream described")
    return stream


def choose_video_stream(container: InputContainer) -> VideoStream:
    """The real video stream: not cover art (``attached_pic``), decodable, the default one if flagged."""
    videos = [s for s in container.streams.video if not s.disposition & Disposition.attached_pic]
    if not videos:
        if not container.streams:
            raise NoVideoStream("the file contains no streams at all (no video, no audio)")
        kinds = sorted({s.type for s in container.streams})
        found = "only a cover picture" if container.streams.video else "only " + "/".join(kinds)
        raise NoVideoStream(f"the file has no video stream ({found}); upload a video file")
    decodable = [s for s in videos if s.codec_context is not None]
    if not decodable:
        codecs = ", ".join(sorted({s.codec_context.name if s.codec_context else "unknown" for s in videos}))
        raise UnsupportedCodec(f"no decoder for this video codec ({codecs}); re-encode it to H.264 or VP9")
    defaults = [s for s in decodable if s.disposition & Disposition.default]
    return (defaults or decodable)[0]


def _frame_rate(container: InputContainer, stream: VideoStream) -> float | None:
    """The frame rate from the headers. The raw H.264/H.265 demuxers report 25 fps as the average whatever the
    stream says; the stream's own (from its SPS timing, else FFmpeg's 25 fps default) is the guessed rate."""
    if container.format.name in RAW_STREAM_FORMATS:
        rate = stream.guessed_rate or stream.average_rate
    else:
        rate = stream.average_rate or stream.guessed_rate
    return float(rate) if rate and rate > 0 else None


def _check_duration(duration_s: float, limits: IngestSettings, at_least: bool = False) -> None:
    if duration_s > limits.max_duration_s:
        length = f"at least {duration_s / 60:.1f}" if at_least else f"{duration_s / 60:.1f}"
        raise TooLong(
            f"the video is {length} min long, over the {limits.max_duration_s / 60:.1f} min limit "
            "(raise VIDEOSEEK_INGEST__MAX_DURATION_S to accept it)"
        )


def _declared_size(stream: VideoStream, log: list[str]) -> tuple[int, int]:
    ctx = stream.codec_context
    width, height = max(ctx.width, 0), max(ctx.height, 0)
    if width == 0 or height == 0:
        # The probing decoder refused a frame over max_pixels and FFmpeg then reports 0x0: its log has the size.
        for line in log:
            match = _PIXEL_LIMIT_LOG.search(line)
            if match:
                return int(match.group(1)), int(match.group(2))
    return width, height


def _check_pixels(width: int, height: int, limits: IngestSettings) -> None:
    if width * height > limits.max_pixels:
        raise TooManyPixels(
            f"the frames are {width}x{height} = {width * height / 1e6:.1f} megapixels, over the "
            f"{limits.max_pixels / 1e6:.1f} megapixel limit (downscale the video, or raise "
            "VIDEOSEEK_INGEST__MAX_PIXELS)"
        )
    if max(width, height) > limits.max_side_px:
        raise TooManyPixels(
            f"the frames are {width}x{height}, a side longer than the {limits.max_side_px} px limit "
            "(downscale the video, or raise VIDEOSEEK_INGEST__MAX_SIDE_PX)"
        )


def _duration_estimate(container: InputContainer, stream: VideoStream) -> float:
    """Stream-level durations (the stream's own, or frames / rate) beat the container's, which covers all
    streams and is sometimes just wrong; the sampler measures the truth."""
    candidates: list[float] = []
    if stream.duration and stream.time_base:
        candidates.append(float(stream.duration * stream.time_base))
    rate = stream.average_rate
    if stream.frames and rate and rate > 0:
        candidates.append(float(stream.frames / rate))
    good = [c for c in candidates if math.isfinite(c) and c > 0]
    if good:
        return max(good)
    if container.duration and container.duration > 0:
        return container.duration / av.time_base
    return 0.0


def _start_time(container: InputContainer, stream: VideoStream) -> float:
    """Time zero of the file as players show it: the container start, else the stream's."""
    if container.start_time is not None:
        return container.start_time / av.time_base
    if stream.start_time is not None and stream.time_base:
        return float(stream.start_time * stream.time_base)
    return 0.0


def _first_frame_rotation(
    container: InputContainer, stream: VideoStream, limits: IngestSettings, max_packets: int = 64
) -> int:
    """Decode at most one frame (from at most ``max_packets`` packets) to read its display-matrix rotation.

    Raises ``EncryptedContent`` when the first packet is encrypted, before it reaches the decoder.
    """
    legacy = _legacy_rotation(stream)
    stream.codec_context.options = {"max_pixels": str(limits.max_pixels)}
    try:
        for count, packet in enumerate(container.demux(stream)):
            refuse_encrypted_packet(packet)
            if legacy is not None:
                return legacy
            for frame in packet.decode():
                return normalize_rotation(frame.rotation)
            if count >= max_packets:
                break
    except av.FFmpegError:
        pass
    return legacy or 0


def _legacy_rotation(stream: VideoStream) -> int | None:
    legacy = stream.metadata.get("rotate")
    if legacy is None:
        return None
    try:
        return normalize_rotation(-float(legacy))  # the old tag is clockwise
    except ValueError:
        return None


def _stream_info(stream: Any) -> StreamInfo:
    ctx = stream.codec_context
    return StreamInfo(
        index=stream.index,
        type=stream.type,
        codec=ctx.name if ctx is not None else None,
        width=int(getattr(ctx, "width", 0) or 0) if stream.type == "video" else 0,
        height=int(getattr(ctx, "height", 0) or 0) if stream.type == "video" else 0,
        attached_pic=bool(stream.disposition & Disposition.attached_pic),
    )


def _mib(n: int) -> str:
    return f"{n / 1024**2:.1f} MiB" if n < 1024**3 else f"{n / 1024**3:.2f} GiB"


def _short(exc: BaseException, limit: int = 160, hide: Path | None = None) -> str:
    text = str(exc).strip() or type(exc).__name__
    if hide is not None:  # FFmpeg errors quote the full path; users only need the file name
        text = text.replace(str(hide), hide.name)
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = [
    "ALLOWED_DEMUXERS",
    "RAW_STREAM_DEMUXERS",
    "RAW_STREAM_FORMATS",
    "StreamInfo",
    "VideoInfo",
    "choose_video_stream",
    "chosen_stream",
    "describe",
    "normalize_rotation",
    "open_media",
    "probe",
    "raw_stream_demuxer",
]
