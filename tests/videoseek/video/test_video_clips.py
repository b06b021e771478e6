"""plan_clips() / plan_shot_clips(): windows cover the whole video, shots split at cuts."""

from __future__ import annotations

import numpy as np
import pytest

from videoseek.settings import IngestSettings
from videoseek.video import ClipPlan, detect_shot_boundaries, plan_clips, plan_shot_clips
from videoseek.video.clips import plan_video_clips


def spans(plans: list[ClipPlan]) -> list[tuple[float, float]]:
    return [(p.start_s, p.end_s) for p in plans]


def test_windows_slide_by_stride_and_the_last_one_ends_at_the_end() -> None:
    ts = np.arange(0.0, 23.0)
    plans = plan_clips(ts, 23.0, window_s=10, stride_s=5, max_frames=64)
    assert spans(plans) == [(0, 10), (5, 15), (10, 20), (13, 23)]
    assert [p.index for p in plans] == [0, 1, 2, 3]
    assert plans[0].frame_indices == list(range(0, 10))
    assert plans[-1].frame_indices == list(range(13, 23))


def test_every_frame_belongs_to_some_clip() -> None:
    ts = np.sort(np.random.default_rng(0).uniform(0, 47.3, 200))
    plans = plan_clips(ts, 47.3, window_s=10, stride_s=5, max_frames=64)
    covered = set().union(*(p.frame_indices for p in plans))
    assert covered == set(range(200))
    assert plans[-1].end_s == pytest.approx(47.3)


def test_video_shorter_than_a_window_is_one_clip() -> None:
    plans = plan_clips(np.array([0.0, 1.0, 2.0]), 3.0, window_s=10, stride_s=5, max_frames=12)
    assert plans == [ClipPlan(0, 0.0, 3.0, [0, 1, 2])]


def test_exact_multiple_of_stride_adds_no_duplicate_tail() -> None:
    plans = plan_clips(np.arange(0.0, 20.0), 20.0, window_s=10, stride_s=5, max_frames=64)
    assert spans(plans) == [(0, 10), (5, 15), (10, 20)]


def test_frames_per_clip_are_capped_and_spread_uniformly() -> None:
    ts = np.arange(0.0, 10.0, 0.25)  # 40 frames in one window
    (plan,) = plan_clips(ts, 10.0, window_s=10, stride_s=5, max_frames=5)
    assert plan.frame_indices == [0, 10, 20, 29, 39]


def test_empty_windows_in_a_gap_are_dropped() -> None:
    ts = np.array([0.0, 1.0, 2.0, 40.0, 41.0])
    plans = plan_clips(ts, 42.0, window_s=10, stride_s=10, max_frames=12)
    assert spans(plans) == [(0, 10), (32, 42)]
    assert [p.index for p in plans] == [0, 1]


def test_no_frames_no_clips() -> None:
    assert plan_clips(np.array([]), 5.0, 10, 5, 12) == []


@pytest.mark.parametrize(("window", "stride", "frames"), [(0, 5, 12), (10, 0, 12), (10, 5, 0)])
def test_bad_clip_arguments_raise(window: float, stride: float, frames: int) -> None:
    with pytest.raises(ValueError):
        plan_clips(np.arange(3.0), 3.0, window, stride, frames)


def three_shots(seconds_each: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Three scenes of different colours, each with a moving bright square and sensor noise."""
    rng = np.random.default_rng(1)
    frames = []
    for colour in [(200, 40, 40), (40, 180, 60), (50, 60, 200)]:
        for i in range(seconds_each):
            f = np.full((36, 64, 3), colour, np.int16) + rng.integers(-15, 16, (36, 64, 3))
            f[10:20, 5 + 8 * i : 15 + 8 * i] = 255
            frames.append(np.clip(f, 0, 255).astype(np.uint8))
    return np.stack(frames), np.arange(3.0 * seconds_each)


def test_shot_boundaries_are_found_at_cuts_not_at_motion() -> None:
    frames, ts = three_shots()
    assert detect_shot_boundaries(frames, ts) == [0, 5, 10]


def test_shot_shorter_than_min_shot_is_merged() -> None:
    frames, ts = three_shots()
    flash = frames.copy()
    flash[7] = 255  # one white frame inside the second shot
    assert detect_shot_boundaries(flash, ts, min_shot_s=3.0) == [0, 5, 10]


def test_shot_clips_follow_shots_and_split_long_ones() -> None:
    frames, ts = three_shots(seconds_each=5)
    plans = plan_shot_clips(frames, ts, 15.0, window_s=3, stride_s=2, max_frames=12)
    assert spans(plans) == [(0, 3), (2, 5), (5, 8), (7, 10), (10, 13), (12, 15)]
    for plan in plans:  # no clip mixes two shots
        shots = {int(ts[i] // 5) for i in plan.frame_indices}
        assert len(shots) == 1


def test_plan_video_clips_honours_clip_mode() -> None:
    frames, ts = three_shots(seconds_each=5)
    windows = plan_video_clips(frames, ts, 15.0, IngestSettings())
    shots = plan_video_clips(frames, ts, 15.0, IngestSettings(clip_mode="shots"))
    assert spans(windows) == [(0, 10), (5, 15)]
    assert spans(shots) == [(0, 5), (5, 10), (10, 15)]
