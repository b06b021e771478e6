"""Which packets must be decoded to get the sampled frames, worked out from the demuxer alone.

At 1 sample per second of 30 fps video, most decoding is wasted. Reading the packets once without decoding
(cheap: no pixels) gives every frame's presentation time and the keyframes. The frames the sampler will keep
are then known in advance, and each needs only the packets from the last keyframe before it (in decode
order) up to itself. Everything else is never sent to the decoder, and packets inside a needed range that
are not themselves kept are decoded with ``skip_frame=NONREF``, so frames nothing refers to (most B-frames)
are skipped too. The result is the same frames a full decode would keep; the decoder checks it (see
:func:`videoseek.video.decode.sample_frames`) and falls back to a full decode if the file disagrees.

Only containers that store presentation timestamps and keyframe flags are planned (MP4/MOV, Matroska/WebM).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import av
import numpy as np
from av.container import InputContainer
from av.video.stream import VideoStream

PLANNABLE_FORMATS = ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm")
_TICK_EPS = 1e-6


class TickSampler:
    """Keeps the first frame at or after each 1/fps tick; one frame per tick even across gaps."""

    def __init__(self, fps: float) -> None:
        self.fps = fps
        self.next_tick = 0.0

    def wants(self, t: float) -> bool:
        if t + _TICK_EPS < self.next_tick:
            return False
        self.next_tick = (math.floor(t * self.fps + _TICK_EPS) + 1) / self.fps
        return True


@dataclass(frozen=True)
class PacketPlan:
    """Per video packet, in demux (decode) order: its pts, whether to send it, whether its frame is kept."""

    pts: np.ndarray  # int64 [P], stream time base
    send: np.ndarray  # bool [P]
    keep: np.ndarray  # bool [P]
    kept_times: np.ndarray  # float64 [K], seconds, presentation order: what decoding must reproduce
    times: np.ndarray  # float64 [P], seconds from the file's time zero
    end_s: float  # end of the last frame (pts + duration), seconds
    last_needed: int  # index of the last packet to send

    @property
    def sent_fraction(self) -> float:
        return float(self.send.mean()) if self.send.size else 0.0


def build_packet_plan(
    container: InputContainer,
    stream: VideoStream,
    fps: float,
    origin_s: float,
    max_duration_s: float,
) -> PacketPlan | None:
    """Demux ``stream`` to its end without decoding and plan the decode; None when the file cannot be
    planned (format not listed, packets without pts, no keyframe flags, nothing to keep)."""
    if container.format.name not in PLANNABLE_FORMATS or stream.time_base is None:
        return None
    pts: list[int] = []
    keys: list[bool] = []
    ends: list[int] = []
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue  # the end-of-stream marker
            if packet.pts is None:
                return None
            pts.append(packet.pts)
            keys.append(packet.is_keyframe)
            ends.append(packet.pts + (packet.duration or 0))
    except av.FFmpegError:
        pass  # truncated or damaged: plan what was readable; the decode pass meets the same error
    if not pts or not any(keys):
        return None
    tb = float(stream.time_base)
    pts_arr = np.asarray(pts, dtype=np.int64)
    times = np.maximum(pts_arr * tb - origin_s, 0.0)
    keep = np.zeros(len(pts), dtype=bool)
    sampler = TickSampler(fps)
    for index in np.argsort(times, kind="stable"):
        if times[index] > max_duration_s:
            break
        if sampler.wants(float(times[index])):
            keep[index] = True
    send = _ranges_from_keyframes(keep, np.asarray(keys, dtype=bool), times)
    kept_idx = np.flatnonzero(keep)
    return PacketPlan(
        pts=pts_arr,
        send=send,
        keep=keep,
        kept_times=np.sort(times[kept_idx]),
        times=times,
        end_s=float(max(np.asarray(ends, dtype=np.int64) * tb - origin_s).clip(min=0.0)),
        last_needed=int(np.flatnonzero(send)[-1]),
    )


def _ranges_from_keyframes(keep: np.ndarray, keys: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Mark, for each kept packet, every packet from the keyframe it decodes from up to itself.

    The keyframe is the last one at or before it in decode order that is not presented after it (an
    open-GOP I-frame is preceded in presentation by B-frames that depend on the previous GOP).
    """
    n = len(keep)
    key_positions = np.where(keys, np.arange(n), -1)
    last_key = np.maximum.accumulate(key_positions)
    send = np.zeros(n, dtype=bool)
    for target in np.flatnonzero(keep):
        start = int(last_key[target])
        while start > 0 and times[start] > times[target]:
            start = int(last_key[start - 1])
        send[max(start, 0) : target + 1] = True
    return send
