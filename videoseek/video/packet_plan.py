"""Which packets must be decoded to get the sampled frames, worked out from the demuxer alone.

At 1 sample per second of 30 fps video, most decoding is wasted. Reading the packets once without decoding
(cheap: no pixels) gives every frame's presentation time and the keyframes. The frames the sampler will keep
are then known in advance, and each needs only the packets from the last keyframe before it (in decode
order) up to itself. Everything else is never sent to the decoder, and packets inside a needed range that
are not themselves kept are decoded with ``skip_frame=NONREF``, so frames nothing refers to (most B-frames)
are skipped too. The result is the same frames a full decode would keep; the decoder checks it (see
:func:`videoseek.video.decode.sample_frames`) and falls back to a full decode if the file disagrees.

Only containers that store presentation timestamps and keyframe flags are planned (MP4/MOV, Matroska/WebM).

``keyframes`` mode (``ingest.sample_mode``) plans other frames: each tick takes the nearest keyframe when one is
within the tolerance of the tick (a keyframe decodes alone: one packet instead of a run from the last
keyframe), and its exact frame otherwise. A keyframe nearest to two ticks is kept once, so on keyframe spacings
longer than the tick interval fewer frames come out than ticks (one per keyframe where every tick is near
one). A tick whose exact frame is a keyframe itself, or is decoded anyway on the way to a later exact frame
of the same run, keeps its exact frame: that costs next to nothing and is the frame ``exact`` would keep
(so an all-intra video samples exactly). Ticks far from every keyframe (long GOPs) sample as ``exact`` does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import av
import numpy as np
from av.container import InputContainer
from av.video.stream import VideoStream

from videoseek.settings import SampleMode

PLANNABLE_FORMATS = ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm")
_TICK_EPS = 1e-6


class PlannedFrames:
    """Keeps exactly the frames a plan names (by presentation time), for plans no tick rule reproduces."""

    def __init__(self, kept_times: np.ndarray) -> None:
        self.kept_times = np.sort(np.asarray(kept_times, dtype=np.float64))
        self.position = 0

    def wants(self, t: float) -> bool:
        times = self.kept_times
        while self.position < len(times) and times[self.position] < t - _TICK_EPS:
            self.position += 1  # a planned frame that never came: the decoder's check rejects the plan
        if self.position < len(times) and abs(times[self.position] - t) <= _TICK_EPS:
            self.position += 1
            return True
        return False


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
    mode: SampleMode = "exact"  # keyframes: the decoder keeps exactly ``kept_times`` (no tick rule applies)

    @property
    def sent_fraction(self) -> float:
        return float(self.send.mean()) if self.send.size else 0.0


def build_packet_plan(
    container: InputContainer,
    stream: VideoStream,
    fps: float,
    origin_s: float,
    max_duration_s: float,
    mode: SampleMode = "exact",
    keyframe_tolerance_s: float = 0.0,
) -> PacketPlan | None:
    """Demux ``stream`` to its end without decoding and plan the decode; None when the file cannot be
    planned (format not listed, packets without pts, no keyframe flags, nothing to keep).

    ``mode="keyframes"`` lets a tick take a keyframe at most ``keyframe_tolerance_s`` away (see the module's
    docstring)."""
    if mode not in ("exact", "keyframes"):
        raise ValueError(f"mode must be 'exact' or 'keyframes', got {mode!r}")
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
    keys_arr = np.asarray(keys, dtype=bool)
    keep = np.zeros(len(pts), dtype=bool)
    picks: list[tuple[float, int]] = []  # (the tick, the packet of its exact frame)
    sampler = TickSampler(fps)
    for index in np.argsort(times, kind="stable"):
        t = float(times[index])
        if t > max_duration_s:
            break
        if sampler.wants(t):
            keep[index] = True
            picks.append((math.floor(t * fps + _TICK_EPS) / fps, int(index)))
    if mode == "keyframes":
        usable = keys_arr & (times <= max_duration_s)
        keep = _prefer_keyframes(picks, usable, keys_arr, times, keyframe_tolerance_s)
    send = _ranges_from_keyframes(keep, keys_arr, times)
    kept_idx = np.flatnonzero(keep)
    return PacketPlan(
        pts=pts_arr,
        send=send,
        keep=keep,
        kept_times=np.sort(times[kept_idx]),
        times=times,
        end_s=float(max(np.asarray(ends, dtype=np.int64) * tb - origin_s).clip(min=0.0)),
        last_needed=int(np.flatnonzero(send)[-1]),
        mode=mode,
    )


def _prefer_keyframes(
    picks: list[tuple[float, int]],
    usable_keys: np.ndarray,
    keys: np.ndarray,
    times: np.ndarray,
    tolerance_s: float,
) -> np.ndarray:
    """Which packets to keep in keyframes mode, from each tick's exact pick: the nearest usable keyframe
    within ``tolerance_s`` of the tick (ties: the earlier), unless the exact frame is itself a keyframe or is
    decoded anyway."""
    key_index = np.flatnonzero(usable_keys)
    order = np.argsort(times[key_index], kind="stable")
    key_index, key_times = key_index[order], times[key_index[order]]
    exact = np.zeros(len(times), dtype=bool)
    substitutes: list[tuple[int, int]] = []  # (exact packet, keyframe packet)
    for tick, index in picks:
        if usable_keys[index]:  # the exact frame is a keyframe: as cheap as any, and on the tick rule
            exact[index] = True
            continue
        j = int(np.searchsorted(key_times, tick))
        near = [c for c in (j - 1, j) if 0 <= c < len(key_times)]
        best = min(near, key=lambda c: (abs(key_times[c] - tick), key_times[c]), default=None)
        if best is not None and abs(key_times[best] - tick) <= tolerance_s + _TICK_EPS:
            substitutes.append((index, int(key_index[best])))
        else:
            exact[index] = True
    decoded_anyway = _ranges_from_keyframes(exact, keys, times)
    keep = exact.copy()
    for index, key in substitutes:
        keep[index if decoded_anyway[index] else key] = True
    return keep


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
