"""A browser-playable copy of a video: H.264 (8-bit 4:2:0) and AAC in MP4, moov first (faststart).

Written for files browsers cannot play as they are (``browser_playback.py``), with the same hardened demuxing as
ingest (``probe.open_media``) and, like all decoding of untrusted files, in a sandboxed child process under a
hard time limit (:func:`write_playback_copy_sandboxed`). Frames keep their presentation times from the file's
time zero, the times search results give, so a result's ``start_s`` is the same moment in the copy. Frames are
turned upright (display rotation) with square pixels, scaled to ``playback_max_side`` at most (never up), with
a keyframe every 2 s so a player seeks quickly.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.audio.stream import AudioStream
from av.container import InputContainer, OutputContainer
from av.stream import Discard
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

from videoseek.settings import IngestSettings
from videoseek.video.decode import _BestEffortClock, output_size
from videoseek.video.errors import DecodeFailed
from videoseek.video.probe import VideoInfo, chosen_stream, open_media, probe
from videoseek.video.sandbox import run_in_sandbox

_TIME_BASE = Fraction(1, 90000)
KEYFRAME_INTERVAL_S = 2.0
PRESET = "fast"


@dataclass(frozen=True)
class PlaybackCopy:
    """What was written: size, frames, span, whether it has sound, and what did not convert."""

    width: int
    height: int
    frames: int
    duration_s: float
    audio: bool
    problems: list[str] = field(default_factory=list)


def copy_size(width: int, height: int, sar: float, rotation: int, max_side: int) -> tuple[int, int]:
    """Upright, square-pixel size with the longer side at most ``max_side``, in even numbers (4:2:0)."""
    w, h = output_size(width, height, sar, max_side)
    if rotation % 180:
        w, h = h, w
    return max(2, w - w % 2), max(2, h - h % 2)


def write_playback_copy(src: Path, dst: Path, limits: IngestSettings) -> PlaybackCopy:
    """Transcode ``src`` into ``dst`` (in this process: call :func:`write_playback_copy_sandboxed` for untrusted
    files). ``dst`` appears complete or not at all."""
    info = probe(src, limits)
    partial = dst.with_name(f".{dst.name}.{uuid.uuid4().hex}.part")
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open_media(src, limits) as (container, _):
            written = _Transcoder(container, info, limits).run(partial)
        partial.replace(dst)
    finally:
        partial.unlink(missing_ok=True)
    return written


def write_playback_copy_sandboxed(src: Path, dst: Path, limits: IngestSettings) -> PlaybackCopy:
    """:func:`write_playback_copy` in a child process limited to ``limits.playback_timeout_s`` and
    ``limits.decode_memory_bytes``; a hang or crash is a ``MediaRejected`` and leaves no ``dst``. A child
    killed mid-write leaves its partial file, removed here."""
    try:
        result: PlaybackCopy = run_in_sandbox(
            write_playback_copy,
            (Path(src), Path(dst), limits),
            timeout_s=limits.playback_timeout_s,
            memory_bytes=limits.decode_memory_bytes,
        )
        return result
    finally:
        for leftover in Path(dst).parent.glob(f".{Path(dst).name}.*.part"):
            leftover.unlink(missing_ok=True)


class _Transcoder:
    """One pass over the source: video (and the first decodable audio stream) decoded, encoded, muxed."""

    def __init__(self, container: InputContainer, info: VideoInfo, limits: IngestSettings) -> None:
        self.container = container
        self.info = info
        self.limits = limits
        self.vin = _prepared_video(container, info, limits)
        self.ain = _first_audio(container, self.vin)
        self.rate = info.frame_rate if info.frame_rate and 0 < info.frame_rate <= 240 else 25.0
        self.clock = _BestEffortClock()
        self.size: tuple[int, int] = (0, 0)
        self.scaled: tuple[int, int] = (0, 0)
        self.rotation = 0
        self.last_t = -math.inf
        # Untimed frames follow the last timed one at the frame rate (as the sampler times them).
        self.anchor_t = 0.0
        self.untimed_since_anchor = -1
        self.frames = 0
        self.end_t = 0.0
        self.decode_errors = 0
        self.audio_errors = 0
        self.audio_samples = 0

    def run(self, target: Path) -> PlaybackCopy:
        with av.open(str(target), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            # Both streams before any packet is muxed (the first one writes the header).
            self.vout = self._video_output(out)
            self.aout = self._audio_output(out)
            streams = [s for s in (self.vin, self.ain) if s is not None]
            try:
                for packet in self.container.demux(streams):
                    if packet.stream.index == self.vin.index:
                        self._video_packet(out, packet)
                    elif self.aout is not None:
                        self._audio_packet(out, packet)
            except av.FFmpegError:
                pass  # a truncated or damaged container: keep what was read (the sampler did the same)
            self._flush(out)
        if self.frames == 0:
            raise DecodeFailed("no frame of the video could be decoded for the playback copy")
        problems = []
        if self.decode_errors:
            problems.append(f"{self.decode_errors} video packet(s) did not decode into the playback copy")
        if self.audio_errors:
            problems.append(f"{self.audio_errors} audio packet(s) did not convert (the copy plays with gaps)")
        width, height = self.size
        return PlaybackCopy(width, height, self.frames, self.end_t, self.aout is not None, problems)

    # -- video ------------------------------------------------------------------------------------

    def _video_output(self, out: OutputContainer) -> VideoStream:
        """Sized from the headers and the first frame's rotation (what probe read); a stream that changes
        size later is scaled to this one."""
        info = self.info
        if info.width <= 0 or info.height <= 0:
            raise DecodeFailed("the video's frame size is unknown: no playback copy can be made")
        self.rotation = info.rotation
        sar = info.sample_aspect_ratio
        self.size = copy_size(info.width, info.height, sar, self.rotation, self.limits.playback_max_side)
        width, height = self.size
        self.scaled = (height, width) if self.rotation % 180 else (width, height)  # before turning upright
        options = {
            "crf": str(self.limits.playback_crf),
            "preset": PRESET,
            "g": str(max(1, round(KEYFRAME_INTERVAL_S * self.rate))),
        }
        stream = out.add_stream("libx264", rate=Fraction(self.rate).limit_denominator(1001), options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = _TIME_BASE
        stream.codec_context.time_base = _TIME_BASE
        return stream

    def _video_packet(self, out: OutputContainer, packet: Any) -> None:
        try:
            frames = packet.decode()
        except av.FFmpegError:
            self.decode_errors += 1
            return
        for frame in frames:
            self._video_frame(out, frame)

    def _video_frame(self, out: OutputContainer, frame: VideoFrame) -> None:
        t = self._time(frame)
        if t is None or t <= self.last_t + 1e-4:  # no time, or not after the last: a player could not show it
            return
        width, height = self.scaled
        if self.rotation:
            rgb = frame.to_ndarray(width=width, height=height, format="rgb24", interpolation="AREA")
            upright: np.ndarray[Any, np.dtype[np.uint8]] = np.ascontiguousarray(
                np.rot90(rgb, k=self.rotation // 90)
            )
            picture = VideoFrame.from_ndarray(upright, format="rgb24").reformat(format="yuv420p")
        else:
            picture = frame.reformat(width=width, height=height, format="yuv420p", interpolation="AREA")
        picture.pts = round(t / _TIME_BASE)
        picture.time_base = _TIME_BASE
        self.last_t = t
        self.frames += 1
        self.end_t = max(self.end_t, t + 1.0 / self.rate)
        for encoded in self.vout.encode(picture):
            out.mux(encoded)

    def _time(self, frame: VideoFrame) -> float | None:
        """Seconds from the file's time zero, as the sampler counts them; untimed frames follow the last."""
        pts = self.clock(frame.pts, frame.dts)
        time_base = self.vin.time_base
        if pts is None or time_base is None:  # raw H.264/H.265 streams carry no times: the frame rate's
            self.untimed_since_anchor += 1
            t = self.anchor_t + self.untimed_since_anchor / self.rate
        else:
            t = max(float(pts * time_base) - self.info.start_time_s, 0.0)
            self.anchor_t, self.untimed_since_anchor = t, 0
        return None if t > self.limits.max_duration_s else t

    # -- audio ------------------------------------------------------------------------------------

    def _audio_output(self, out: OutputContainer) -> AudioStream | None:
        if self.ain is None:
            return None
        stream = out.add_stream("aac", rate=48000)
        stream.layout = "stereo"
        return stream

    def _audio_packet(self, out: OutputContainer, packet: Any) -> None:
        assert self.aout is not None and self.ain is not None
        try:
            for frame in packet.decode():
                if frame.pts is None or self.ain.time_base is None:
                    continue
                t = float(frame.pts * self.ain.time_base) - self.info.start_time_s
                if t < 0 or t > self.limits.max_duration_s:
                    continue
                frame.pts = round(t * frame.sample_rate)
                frame.time_base = Fraction(1, frame.sample_rate)
                for encoded in self.aout.encode(frame):
                    out.mux(encoded)
        except (av.FFmpegError, ValueError):
            self.audio_errors += 1

    def _flush(self, out: OutputContainer) -> None:
        try:
            for frame in self.vin.decode(None):
                self._video_frame(out, frame)
        except av.FFmpegError:
            pass
        for encoded in self.vout.encode(None):
            out.mux(encoded)
        if self.aout is not None:
            try:
                for encoded in self.aout.encode(None):
                    out.mux(encoded)
            except (av.FFmpegError, ValueError):
                self.audio_errors += 1


def _prepared_video(container: InputContainer, info: VideoInfo, limits: IngestSettings) -> VideoStream:
    stream = chosen_stream(container, info)
    ctx = stream.codec_context
    ctx.thread_type = "AUTO"
    ctx.thread_count = 0
    ctx.options = {"max_pixels": str(limits.max_pixels)}  # a stream may switch to a bigger size mid-file
    return stream


def _first_audio(container: InputContainer, video: VideoStream) -> AudioStream | None:
    """The first audio stream with a decoder; every stream but it and the video is discarded."""
    audio = next((s for s in container.streams.audio if s.codec_context is not None), None)
    for other in container.streams:
        if other.index not in (video.index, audio.index if audio is not None else -1):
            other.discard = Discard.all
    return audio
