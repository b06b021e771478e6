"""bench/scale.py: its recall against exact search, and one tiny run end to end (seconds)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def scale():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(BENCH))  # the bench scripts import their neighbours (synthetic) by name
    try:
        import scale as module

        yield module
    finally:
        sys.path.remove(str(BENCH))


def test_recall_counts_the_exact_top_k_among_the_first_k_found(scale) -> None:  # type: ignore[no-untyped-def]
    truth = [{"a", "b"}, {"c", "d"}]
    assert scale.recall_at_k([["a", "b"], ["c", "d"]], truth, k=2) == 1.0
    assert scale.recall_at_k([["b", "x"], ["x", "y"]], truth, k=2) == 0.25  # (1/2 + 0/2) / 2
    assert scale.recall_at_k([["x", "a", "b"], ["c", "d"]], truth, k=2) == 0.75  # "b" came third: not counted
    with pytest.raises(ValueError):
        scale.recall_at_k([["a"]], truth, k=2)


def test_exact_top_k_over_batches_equals_one_brute_force_pass(scale) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    queries, rows = rng.standard_normal((5, 8)), rng.standard_normal((60, 8)) * rng.uniform(0.5, 3, (60, 1))
    ids = [f"r{i}" for i in range(60)]
    exact = scale.ExactTopK(queries, k=4)
    for start in range(0, 60, 13):  # uneven batches
        exact.add(rows[start : start + 13], ids[start : start + 13])
    cosine = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ (
        rows / np.linalg.norm(rows, axis=1, keepdims=True)
    ).T
    assert exact.truth() == [{ids[i] for i in np.argsort(-row)[:4]} for row in cosine]


def tiny_run(scale, clips: int, root: Path) -> dict:  # type: ignore[no-untyped-def, type-arg]
    """``clips`` 16-d clips of 3 frames, optimized every 500, beside a 500-clip reference store."""
    return scale.measure(  # type: ignore[no-any-return]
        clips, dim=16, frames=3, queries=8, layout="scale", root=root, optimize_every=500, reference_clips=500
    )


def test_a_tiny_run_reports_every_field_and_finds_the_exact_neighbours(  # type: ignore[no-untyped-def]
    scale, tmp_path: Path
) -> None:
    run = tiny_run(scale, 1_200, tmp_path / "store")
    assert set(run) >= {
        "clips",
        "rss_bytes_per_clip",
        "disk_bytes_per_clip",
        "upsert_s",
        "optimize_s",
        "optimizes",
        "peak_rss_bytes",
        "query_p50_ms",
        "query_p95_ms",
        "filtered_query_p50_ms",
        "recall_at_10",
        "maxsim_query_p50_ms",
        "query_p50_vs_reference",
    }
    assert run["clips"] == 1_200 and run["disk_bytes_per_clip"] > 0
    assert run["optimizes"] == 3  # after 500 and 1,000 written clips (batches of 500), then for the last 200
    assert run["recall_at_10"] == 1.0  # 1,200 clips: below the full-scan threshold, so the search is exact
    assert run["reference_clips"] == 500 and run["query_p50_vs_reference"] > 0


def test_a_size_at_or_below_the_reference_builds_no_reference_store(  # type: ignore[no-untyped-def]
    scale, tmp_path: Path
) -> None:
    run = tiny_run(scale, 500, tmp_path / "s")
    assert "query_p50_vs_reference" not in run and not (tmp_path / "s" / "reference").exists()


def test_a_run_in_another_layout_builds_that_layout(  # type: ignore[no-untyped-def]
    scale, tmp_path: Path
) -> None:
    run = scale.measure(
        300, dim=16, frames=3, queries=4, layout="combined", root=tmp_path / "c", optimize_every=500
    )
    assert run["layout"] == "combined" and run["recall_at_10"] == 1.0
    assert (tmp_path / "c" / "vs__bench__1").is_dir()
    assert not (tmp_path / "c" / "frames").exists()  # combined: the frames stayed in the main shard
