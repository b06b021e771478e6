"""The shared half of the store: point ids, clip validation, names and filter semantics."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from videoseek.store import ClipPoint, InvalidPoint, SearchFilter, point_id
from videoseek.store.base import (
    AnyCondition,
    MatchCondition,
    RangeCondition,
    filter_conditions,
    parse_physical,
    physical_name,
)


def _clip(**overrides: object) -> ClipPoint:
    fields: dict[str, object] = {
        "video_id": "ab12",
        "clip_index": 0,
        "start_s": 0.0,
        "end_s": 10.0,
        "pooled": np.ones(4),
        "frames": np.ones((2, 4)),
        "frame_times": [0.0, 5.0],
        "payload": {},
    }
    fields.update(overrides)
    return ClipPoint(**fields)  # type: ignore[arg-type]


def test_point_ids_are_deterministic_uuids_unique_per_clip() -> None:
    assert point_id("ab12", 3) == point_id("ab12", 3)
    assert uuid.UUID(point_id("ab12", 3)).version == 5
    assert len({point_id(v, i) for v in ("ab12", "ab13") for i in range(50)}) == 100
    assert _clip(clip_index=7).id == point_id("ab12", 7)


def test_clip_points_are_coerced_to_float32() -> None:
    point = _clip(pooled=[1, 2, 3, 4], frames=[[1, 2, 3, 4]], frame_times=[1])
    assert point.pooled.dtype == np.float32 and point.frames.dtype == np.float32
    assert point.frame_times == [1.0]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"frames": np.ones((2, 3))}, "frames must be"),
        ({"frame_times": [0.0]}, "frame_times"),
        ({"pooled": np.ones((2, 2))}, "1-D"),
        ({"pooled": np.zeros(4)}, "all zeros"),
        ({"frames": np.full((2, 4), np.nan)}, "NaN"),
        ({"start_s": 5.0, "end_s": 1.0}, "start_s"),
        ({"clip_index": -1}, "clip_index"),
        ({"payload": {"video_id": "x"}}, "must not set"),
        ({"payload": {"metadata": "x"}}, "dict of user metadata"),
    ],
)
def test_bad_clips_are_rejected_with_the_reason(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidPoint, match=message):
        _clip(**overrides)


def test_stored_payload_adds_structural_fields_and_indexes_scalar_metadata() -> None:
    point = _clip(payload={"source": "a.mp4", "metadata": {"cam": "x", "n": 2, "ok": True, "tags": ["a"]}})
    stored = point.stored_payload()
    assert (
        stored["video_id"] == "ab12" and stored["frame_times"] == [0.0, 5.0] and stored["source"] == "a.mp4"
    )
    assert point.metadata_indexes() == {
        'metadata."cam"': "keyword",
        'metadata."n"': "integer",
        'metadata."ok"': "bool",
    }


def test_physical_names_round_trip_even_with_double_underscores() -> None:
    for name in ("clips", "a__b", "x__1"):
        assert parse_physical(physical_name(name, 12)) == (name, 12)
    assert parse_physical("clips") is None and parse_physical("vs__clips__x") is None


def test_filter_conditions_express_overlap_and_numeric_equality() -> None:
    flt = SearchFilter(video_ids=["a"], metadata={"cam": "x", "n": 2, "ok": False}, time_range=(3.0, 8.0))
    assert filter_conditions(flt) == [
        AnyCondition("video_id", ("a",)),
        MatchCondition('metadata."cam"', "x"),
        RangeCondition('metadata."n"', gte=2.0, lte=2.0),
        MatchCondition('metadata."ok"', False),
        RangeCondition("end_s", gte=3.0),
        RangeCondition("start_s", lte=8.0),
    ]
    assert filter_conditions(None) == [] and filter_conditions(SearchFilter()) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"time_range": (5.0, 1.0)},
        {"metadata": {'bad"key': 1}},
        {"metadata": {"k": None}},
        {"metadata": {"k": float("nan")}},
    ],
)
def test_bad_filters_are_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SearchFilter(**kwargs)  # type: ignore[arg-type]
