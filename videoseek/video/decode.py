"""Sample RGB frames from a video at a fixed rate, keeping whatever decodes.

Frames are chosen by presentation time, so variable frame rates, non-zero start times and gaps behave: the
first frame at or after each 1/fps tick is kept. Speed comes from not doing work for frames that are not
kept: in MP4/MOV/MKV/WebM only the packets the kept frames depend on are decoded (see ``packet_plan``), and
everywhere the YUV->RGB conversion and the downscale run once per kept frame, fused into one swscale call at
the small output size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import av
import numpy as np
from av.container import InputContainer
from av.packet import Packet
from av.stream import Discard
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

from videoseek.settings import IngestSettings
from videoseek.subtitle_text import SubtitleCue
from videoseek.video.encryption import refuse_encrypted_packet
from videoseek.video.errors import DecodeFailed
from videoseek.video.packet_plan import (
    PLANNABLE_FORMATS,
    PacketPlan,
    PlannedFrames,
    TickSampler,
    build_packet_plan,
)
from videoseek.video.probe import VideoInfo, chosen_stream, describe, normalize_rotation, open_media

_TICK_EPS = 1e-6
_GAP_S = 1.0  # a jump between consecutive frames longer than this (and 10 frame periods) is reported
# A first frame later than the first packet by more than this (and 3 frame periods) means the opening did not
# decode: the stream starts without a keyframe (its head was cut off). Leading B-frames of an open GOP that a
# decoder drops lose a frame or two, which is not worth reporting.
_LOST_OPENING_S = 0.5


@dataclass(frozen=True)
class SampledVideo:
    """Frames sampled from one video.

    ``timestamps`` (float64 [N], seconds, increasing) are presentation times from the file's time zero (what a
    player shows). ``frames`` (uint8 [N, H, W, 3] RGB) are upright (rotation applied, square pixels) with the
    longer side <= the requested ``max_side`` (never upscaled). ``duration_s`` is the span that actually
    decoded (end of the last frame), which is what clips should cover; ``info.duration_s`` is what the headers
    claimed. ``problems`` lists, in words, what did not decode (corrupt packets, truncated tail...).
    """

    timestamps: np.ndarray
    frames: np.ndarray
    info: VideoInfo
    duration_s: float
    decoded_frames: int
    problems: list[str] = field(default_factory=list)
    subtitles: list[SubtitleCue] = field(default_factory=list)  # text subtitle tracks (sandboxed decode only)

    def __len__(self) -> int:
        return int(self.timestamps.shape[0])


class _BestEffortClock:
    """FFmpeg's ``guess_correct_pts``: trust pts unless it has gone backwards more often than dts.

    Needed for e.g. AVI with packed B-frames, where the demuxer invents pts in decode order but the dts of
    the decoded frames are in presentation order.
    """

    def __init__(self) -> None:
        self.faulty_pts = 0
        self.faulty_dts = 0
        self.last_pts: int | None = None
        self.last_dts: int | None = None

    def __call__(self, pts: int | None, dts: int | None) -> int | None:
        if dts is not None:
            self.faulty_dts += self.last_dts is not None and dts <= self.last_dts
            self.last_dts = dts
        if pts is not None:
            self.faulty_pts += self.last_pts is not None and pts <= self.last_pts
            self.last_pts = pts
        if pts is not None and (self.faulty_pts <= self.faulty_dts or dts is None):
            return pts
        return dts


@dataclass
class _DecodeLog:
    """What went wrong while decoding, turned into ``problems`` lines at the end."""

    decode_errors: int = 0
    first_decode_error: str = ""
    corrupt_frames: int = 0
    backwards: int = 0
    read_error: str = ""
    gaps: list[tuple[float, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        out: list[str] = []
        if self.read_error:
            out.append(self.read_error)
        if self.decode_errors:
            out.append(
                f"{self.decode_errors} packet(s) failed to decode and were skipped "
                f"(first error: {self.first_decode_error})"
            )
        if self.corrupt_frames:
            out.append(f"{self.corrupt_frames} sampled frame(s) were flagged corrupt by the decoder")
        if self.backwards > 2:  # one or two are expected where the clock switches from pts to dts
            out.append(f"{self.backwards} frame(s) had timestamps going backwards and were skipped")
        if self.gaps:
            spans = ", ".join(f"{a:.2f}-{b:.2f} s" for a, b in self.gaps[:3])
            more = f" and {len(self.gaps) - 3} more" if len(self.gaps) > 3 else ""
            out.append(f"no frames in {spans}{more} (damaged data, or a pause in a variable-rate video)")
        return out + self.notes


def output_size(width: int, height: int, sar: float, max_side: int) -> tuple[int, int]:
    """Square-pixel size with the longer side at most ``max_side``, keeping the aspect ratio, never upscaling."""
    display_w = max(width * sar, 1.0)
    scale = min(1.0, max_side / max(display_w, height))
    return max(1, round(display_w * scale)), max(1, round(height * scale))


class _FrameConverter:
    """Converts kept frames to upright RGB arrays of one fixed size (chosen from the first kept frame)."""

    def __init__(self, info: VideoInfo, max_side: int) -> None:
        self.sar = info.sample_aspect_ratio
        self.max_side = max_side
        self.size: tuple[int, int] | None = None
        self.source_size: tuple[int, int] | None = None
        self.rotation = 0
        self.size_changed = False

    def __call__(self, frame: VideoFrame) -> np.ndarray:
        if self.size is None:
            self.source_size = (frame.width, frame.height)
            self.size = output_size(frame.width, frame.height, self.sar, self.max_side)
            self.rotation = normalize_rotation(frame.rotation)
        elif (frame.width, frame.height) != self.source_size:
            self.size_changed = True  # still scaled to the first size, so all frames stack
        width, height = self.size
        rgb: np.ndarray = frame.to_ndarray(width=width, height=height, format="rgb24", interpolation="AREA")
        if self.rotation:
            rgb = np.ascontiguousarray(np.rot90(rgb, k=self.rotation // 90))
        return rgb


def sample_frames(
    path: Path,
    limits: IngestSettings,
    fps: float | None = None,
    max_side: int = 256,
    skip_unneeded: bool = True,
) -> SampledVideo:
    """Decode ``path`` and keep one RGB frame per 1/``fps`` seconds (default ``limits.sample_fps``).

    ``skip_unneeded`` decodes only the packets the kept frames depend on where the container allows it
    (same frames, much faster); False decodes every frame. ``limits.sample_mode="keyframes"`` lets each tick
    take a keyframe within ``limits.keyframe_tolerance`` tick intervals instead (see ``packet_plan``); it
    needs a planned decode, so where there is none (other containers, ``skip_unneeded=False``, a file the plan
    does not match) the frames are the exact ones. Raises a ``MediaRejected`` subclass for files
    refused by :func:`probe`'s checks, and ``DecodeFailed`` when not a single frame decoded. Anything less
    is kept and described in ``problems``.
    """
    fps = limits.sample_fps if fps is None else fps
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    if max_side < 1:
        raise ValueError(f"max_side must be >= 1, got {max_side!r}")
    path = Path(path)
    with open_media(path, limits) as (container, log):
        info = describe(container, limits, path, log)
        stream = _prepared_stream(container, info, limits)
        if not (skip_unneeded and container.format.name in PLANNABLE_FORMATS):
            return _Decoder(stream, info, limits, fps, max_side).run_all(container)
        plan = build_packet_plan(
            container,
            stream,
            fps,
            info.start_time_s,
            limits.max_duration_s,
            mode=limits.sample_mode,
            keyframe_tolerance_s=limits.keyframe_tolerance / fps,
        )
    # The planning pass consumed the demuxer: decode from a fresh one (cheaper and safer than seeking).
    if plan is not None:
        with open_media(path, limits) as (container, _):
            stream = _prepared_stream(container, info, limits)
            planned = _Decoder(stream, info, limits, fps, max_side).run_planned(container, plan)
        if planned is not None:
            return planned
    with open_media(path, limits) as (container, _):
        stream = _prepared_stream(container, info, limits)
        return _Decoder(stream, info, limits, fps, max_side).run_all(container)


def _prepared_stream(container: InputContainer, info: VideoInfo, limits: IngestSettings) -> VideoStream:
    """The chosen video stream, set up for fast, bounded decoding; every other stream is discarded."""
    stream = chosen_stream(container, info)
    for other in container.streams:
        if other.index != stream.index:
            other.discard = Discard.all  # the demuxer can skip parsing streams we never read
    ctx = stream.codec_context
    ctx.thread_type = "AUTO"
    ctx.thread_count = 0
    # A stream may switch to a bigger frame size mid-file; the decoder refuses frames over the limit.
    ctx.options = {"max_pixels": str(limits.max_pixels)}
    return stream


class _Decoder:
    """One decoding pass over one open container: feeds packets, samples frames, collects problems."""

    def __init__(
        self, stream: VideoStream, info: VideoInfo, limits: IngestSettings, fps: float, max_side: int
    ) -> None:
        self.stream = stream
        self.info = info
        self.limits = limits
        self.time_base = stream.time_base
        self.origin = info.start_time_s
        self.rate = info.frame_rate or 25.0
        self.step = 1.0 / self.rate
        self.sampler: TickSampler | PlannedFrames = TickSampler(fps)
        self.clock = _BestEffortClock()
        self.convert = _FrameConverter(info, max_side)
        self.log = _DecodeLog()
        self.kept_t: list[float] = []
        self.kept: list[np.ndarray] = []
        self.decoded = 0
        self.last_t = -math.inf
        self.end_t = 0.0
        self.stopped = False
        self.track_gaps = True
        # Earliest presentation time among the packets sent before the first frame came out.
        self.first_packet_t: float | None = None
        # Frames without a timestamp (raw H.264/H.265 streams have none) are timed by the frame rate from the
        # last timed frame: anchor + n / rate, one rounding, so 10 fps gives 1.0, 2.0... rather than sums of 0.1.
        self.anchor_t = 0.0
        self.untimed_since_anchor = -1

    def run_all(self, container: InputContainer) -> SampledVideo:
        """Decode every packet."""
        try:
            for packet in container.demux(self.stream):
                if not self._decode(packet):
                    break
        except av.FFmpegError as exc:
            self._read_failed(exc)
        return self._result(self.end_t)

    def run_planned(self, container: InputContainer, plan: PacketPlan) -> SampledVideo | None:
        """Decode only what ``plan`` says; None when the decoded frames are not the planned ones."""
        self.track_gaps = False  # decoded frames are sparse by design; gaps come from the plan
        if plan.mode != "exact":
            self.sampler = PlannedFrames(plan.kept_times)  # keyframes are not what the tick rule would keep
        ctx = self.stream.codec_context
        skip: Literal["DEFAULT", "NONREF"] = "DEFAULT"
        try:
            for index, packet in enumerate(container.demux(self.stream)):
                if packet.size == 0:
                    self._decode(packet)  # end of stream: flush
                    break
                if index > plan.last_needed:
                    self._drain()
                    break
                if index >= len(plan.pts) or packet.pts != plan.pts[index]:
                    return None  # the demuxer disagrees with the planning pass
                if not plan.send[index]:
                    continue
                wanted: Literal["DEFAULT", "NONREF"] = "DEFAULT" if plan.keep[index] else "NONREF"
                if wanted != skip:
                    ctx.skip_frame = skip = wanted
                if not self._decode(packet):
                    break
        except av.FFmpegError as exc:
            self._read_failed(exc)
        kept_t = np.asarray(self.kept_t, dtype=np.float64)
        if kept_t.shape != plan.kept_times.shape or not np.allclose(
            kept_t, plan.kept_times, rtol=0, atol=1e-6
        ):
            return (
                None  # e.g. a packet flagged key that is not, or a frame the decoder dropped: decode it all
            )
        self.log.gaps.extend(_gaps(np.sort(plan.times), self._gap_threshold()))
        return self._result(plan.end_s)

    def _decode(self, packet: Packet[Any]) -> bool:
        refuse_encrypted_packet(packet)  # e.g. past a clear lead the headers did not declare
        if self.decoded == 0:
            self._note_leading_packet(packet)
        try:
            frames = packet.decode()
        except av.FFmpegError as exc:
            self.log.decode_errors += 1
            self.log.first_decode_error = self.log.first_decode_error or _short(exc)
            return True
        return all(self._take(frame) for frame in frames)

    def _note_leading_packet(self, packet: Packet[Any]) -> None:
        """Remember when the stream claims to start (packets an edit list cuts away do not count)."""
        if packet.pts is None or self.time_base is None or packet.is_discard or packet.size == 0:
            return
        t = max(float(packet.pts * self.time_base) - self.origin, 0.0)
        self.first_packet_t = t if self.first_packet_t is None else min(self.first_packet_t, t)

    def _check_opening(self, first_t: float) -> None:
        """Report an opening that did not decode (found when the first frame comes out)."""
        start = self.first_packet_t
        if start is not None and first_t - start > max(_LOST_OPENING_S, 3 * self.step):
            self.log.notes.append(
                f"the opening {start:.2f}-{first_t:.2f} s did not decode: the video starts without a "
                "keyframe (the beginning of the file is probably missing)"
            )

    def _drain(self) -> None:
        try:
            for frame in self.stream.decode(None):
                if not self._take(frame):
                    break
        except av.FFmpegError:
            pass

    def _read_failed(self, exc: av.FFmpegError) -> None:
        """The demuxer gave up (truncated or corrupt container): keep what decoded, drain the decoder."""
        self.log.read_error = f"reading stopped at {max(self.last_t, 0.0):.2f} s: {_short(exc)}"
        self._drain()

    def _gap_threshold(self) -> float:
        return max(_GAP_S, 10 * self.step)

    def _take(self, frame: VideoFrame) -> bool:
        """Handle one decoded frame; False stops decoding."""
        self.decoded += 1
        pts = self.clock(frame.pts, frame.dts)
        if pts is None or self.time_base is None:
            self.untimed_since_anchor += 1
            t = self.anchor_t + self.untimed_since_anchor / self.rate
        else:
            t = max(float(pts * self.time_base) - self.origin, 0.0)
            self.anchor_t, self.untimed_since_anchor = t, 0
        if self.decoded == 1:
            self._check_opening(t)
        if t + _TICK_EPS < self.last_t:
            self.log.backwards += 1
            return True
        if self.track_gaps and self.last_t >= 0 and t - self.last_t > self._gap_threshold():
            self.log.gaps.append((self.last_t, t))
        self.last_t = t
        duration = float(frame.duration * self.time_base) if frame.duration and self.time_base else self.step
        self.end_t = max(self.end_t, t + duration)
        if t > self.limits.max_duration_s:
            self.log.notes.append(f"stopped at the {self.limits.max_duration_s:.0f} s duration limit")
            self.stopped = True
            return False
        if self.sampler.wants(t):
            self.kept.append(self.convert(frame))
            self.kept_t.append(t)
            self.log.corrupt_frames += bool(frame.is_corrupt)
        return True

    def _declared_span(self) -> float:
        """How long the headers say the video plays: the stream's own duration when it has one.

        Not ``info.duration_s``, which takes frames / rate when larger (right for refusing long files): an edit
        list that cuts the start away keeps those frames in the file, and the shorter played span would then
        read as a truncated file.
        """
        if self.stream.duration and self.time_base:
            own = float(self.stream.duration * self.time_base)
            if math.isfinite(own) and own > 0:
                return own
        return self.info.duration_s

    def _result(self, end_t: float) -> SampledVideo:
        log = self.log
        if not self.kept:
            details = "; ".join(log.problems()) or "the decoder returned no frames"
            raise DecodeFailed(f"no frame of the video could be decoded ({details})")
        if self.convert.size_changed:
            log.notes.append("the frame size changed mid-stream; later frames were scaled to the first size")
        declared = self._declared_span()
        if declared > 0 and end_t < declared * 0.9 - 0.5 and not self.stopped:
            log.notes.append(
                f"only {end_t:.2f} s of the {declared:.2f} s the header declares decoded (truncated file?)"
            )
        return SampledVideo(
            timestamps=np.asarray(self.kept_t, dtype=np.float64),
            frames=np.stack(self.kept).astype(np.uint8, copy=False),
            info=replace(self.info, rotation=self.convert.rotation),
            duration_s=end_t,
            decoded_frames=self.decoded,
            problems=log.problems(),
        )


def _gaps(sorted_times: np.ndarray, threshold: float) -> list[tuple[float, float]]:
    jumps = np.flatnonzero(np.diff(sorted_times) > threshold)
    return [(float(sorted_times[i]), float(sorted_times[i + 1])) for i in jumps]


def _short(exc: BaseException, limit: int = 160) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
