"""Cut a sampled video into clips: fixed sliding windows, or shots found by a colour-histogram detector.

A clip is a time span plus the indices of the sampled frames that represent it (at most ``max_frames``,
spread uniformly), which is what the image tower embeds and what search results point at.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from videoseek.settings import IngestSettings

_EPS = 1e-6


@dataclass(frozen=True)
class ClipPlan:
    """Clip ``index`` spans [``start_s``, ``end_s``) of the video and is represented by ``frame_indices``."""

    index: int
    start_s: float
    end_s: float
    frame_indices: list[int] = field(default_factory=list)


def _check_args(window_s: float, stride_s: float, max_frames: int) -> None:
    if not window_s > 0:
        raise ValueError(f"window_s must be > 0, got {window_s!r}")
    if not stride_s > 0:
        raise ValueError(f"stride_s must be > 0, got {stride_s!r}")
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames!r}")


def uniform_subset(indices: np.ndarray, max_frames: int) -> list[int]:
    """At most ``max_frames`` of ``indices``, evenly spread and always including the first and last."""
    if len(indices) <= max_frames:
        return [int(i) for i in indices]
    picks = np.unique(np.round(np.linspace(0, len(indices) - 1, max_frames)).astype(np.int64))
    return [int(indices[p]) for p in picks]


def window_spans(start_s: float, end_s: float, window_s: float, stride_s: float) -> list[tuple[float, float]]:
    """Windows of ``window_s`` every ``stride_s`` from ``start_s``; the last one ends exactly at ``end_s``.

    A span no longer than a window is a single window. The final window is aligned to the end (so it is
    full length and the tail is covered) unless the stride grid already ends there.
    """
    if end_s - start_s <= window_s + _EPS:
        return [(start_s, end_s)]
    spans: list[tuple[float, float]] = []
    begin = start_s
    while begin + window_s < end_s - _EPS:
        spans.append((begin, begin + window_s))
        begin += stride_s
    last = (max(start_s, end_s - window_s), end_s)
    if not spans or last[0] > spans[-1][0] + _EPS:
        spans.append(last)
    return spans


def _spans_to_plans(
    spans: list[tuple[float, float]], timestamps: np.ndarray, max_frames: int, final_end: float
) -> list[ClipPlan]:
    plans: list[ClipPlan] = []
    for start, end in spans:
        inclusive_end = end >= final_end - _EPS  # the last clip also owns a frame exactly at its end
        upper = end + _EPS if inclusive_end else end - _EPS
        members = np.flatnonzero((timestamps >= start - _EPS) & (timestamps < upper))
        if len(members) == 0:  # a gap in a variable-rate video: nothing to embed for this span
            continue
        plans.append(ClipPlan(len(plans), float(start), float(end), uniform_subset(members, max_frames)))
    return plans


def plan_clips(
    timestamps: np.ndarray, duration_s: float, window_s: float, stride_s: float, max_frames: int
) -> list[ClipPlan]:
    """Sliding windows over [0, duration): ``window_s`` long every ``stride_s``; a video shorter than a
    window is one clip; the last window ends at the end of the video. Windows without frames are dropped
    and ``index`` counts the clips that remain."""
    _check_args(window_s, stride_s, max_frames)
    timestamps = np.asarray(timestamps, dtype=np.float64)
    if timestamps.size == 0:
        return []
    end = max(float(duration_s), float(timestamps[-1]))
    spans = window_spans(0.0, end, window_s, stride_s)
    return _spans_to_plans(spans, timestamps, max_frames, end)


def colour_histograms(frames: np.ndarray, bins: int = 8, chunk: int = 64) -> np.ndarray:
    """Joint RGB histogram per frame (``bins``^3 cells), normalised to sum to 1: float64 [N, bins^3].

    Computed ``chunk`` frames at a time so an hour of frames never needs a full-size integer copy.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [N, H, W, 3], got shape {frames.shape}")
    n = frames.shape[0]
    out = np.zeros((n, bins**3), dtype=np.float64)
    for lo in range(0, n, chunk):
        block = frames[lo : lo + chunk]
        block = block.reshape(block.shape[0], -1, 3)
        q = (block.astype(np.int32) * bins) // 256
        cells = (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]
        m = block.shape[0]
        offsets = (np.arange(m, dtype=np.int32) * bins**3)[:, None]
        counts = np.bincount((cells + offsets).ravel(), minlength=m * bins**3).reshape(m, bins**3)
        out[lo : lo + m] = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    return out


def detect_shot_boundaries(
    frames: np.ndarray, timestamps: np.ndarray, threshold: float = 0.45, min_shot_s: float = 1.0
) -> list[int]:
    """Indices of the sampled frames that start a shot (always including 0).

    Each frame's joint RGB histogram (8x8x8 cells) is compared with the current shot's reference frame
    using the total-variation distance (half the L1 norm, in [0, 1]: 0 for identical colour distributions,
    1 for disjoint ones). Colour histograms ignore where things are, so camera and object motion inside a
    shot barely move them while a cut to another scene does. A distance above ``threshold`` starts a new
    shot, unless the current shot is younger than ``min_shot_s``: then the frame is treated as an outlier
    (a flash, a glitch) and the reference stays put, so returning to the scene is not a second cut. The
    reference follows every ordinary frame, so slow changes (pans, fades) never accumulate into a cut.
    """
    timestamps = np.asarray(timestamps, dtype=np.float64)
    if len(frames) != len(timestamps):
        raise ValueError(f"{len(frames)} frames but {len(timestamps)} timestamps")
    if len(frames) == 0:
        return []
    hist = colour_histograms(frames)
    starts = [0]
    reference = hist[0]
    for i in range(1, len(hist)):
        distance = 0.5 * float(np.abs(hist[i] - reference).sum())
        if distance <= threshold:
            reference = hist[i]
        elif timestamps[i] - timestamps[starts[-1]] >= min_shot_s - _EPS:
            starts.append(i)
            reference = hist[i]
    return starts


def plan_shot_clips(
    frames: np.ndarray,
    timestamps: np.ndarray,
    duration_s: float,
    window_s: float,
    stride_s: float,
    max_frames: int,
    threshold: float = 0.45,
    min_shot_s: float = 1.0,
) -> list[ClipPlan]:
    """One clip per shot (see :func:`detect_shot_boundaries`); a shot longer than ``window_s`` is split into
    sliding windows inside the shot, exactly as :func:`plan_clips` does for a whole video."""
    _check_args(window_s, stride_s, max_frames)
    timestamps = np.asarray(timestamps, dtype=np.float64)
    starts = detect_shot_boundaries(frames, timestamps, threshold, min_shot_s)
    if not starts:
        return []
    end = max(float(duration_s), float(timestamps[-1]))
    # A shot starts at 0 or at its first frame's time, and ends where the next shot starts.
    bounds = [0.0] + [float(timestamps[i]) for i in starts[1:]] + [end]
    spans: list[tuple[float, float]] = []
    for shot_start, shot_end in itertools.pairwise(bounds):
        spans.extend(window_spans(shot_start, shot_end, window_s, stride_s))
    return _spans_to_plans(spans, timestamps, max_frames, end)


def plan_video_clips(
    frames: np.ndarray, timestamps: np.ndarray, duration_s: float, limits: IngestSettings
) -> list[ClipPlan]:
    """Clips as configured: ``limits.clip_mode`` "window" (default) or "shots"."""
    if limits.clip_mode == "shots":
        return plan_shot_clips(
            frames,
            timestamps,
            duration_s,
            limits.clip_window_s,
            limits.clip_stride_s,
            limits.max_frames_per_clip,
            threshold=limits.shot_threshold,
        )
    return plan_clips(
        timestamps, duration_s, limits.clip_window_s, limits.clip_stride_s, limits.max_frames_per_clip
    )
