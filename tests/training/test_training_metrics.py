"""Retrieval metrics on hand-made similarity matrices."""

from __future__ import annotations

import numpy as np
import pytest

from training.metrics import retrieval_metrics, text_to_video_ranks, video_to_text_ranks


def test_perfect_similarity_gives_rank_one_everywhere() -> None:
    sim = np.eye(20) + 0.01 * np.random.default_rng(0).random((20, 20))
    metrics = retrieval_metrics(sim)
    for direction in ("t2v", "v2t"):
        assert metrics[direction] == {
            "R@1": 100.0,
            "R@5": 100.0,
            "R@10": 100.0,
            "MdR": 1.0,
            "MnR": 1.0,
            "MRR": 1.0,
        }


def test_reversed_similarity_gives_the_worst_ranks() -> None:
    n = 12
    sim = -np.eye(n)  # the correct clip is the only one scoring lower than all others
    ranks = text_to_video_ranks(sim, range(n))
    assert ranks.tolist() == [n] * n
    metrics = retrieval_metrics(sim)["t2v"]
    assert metrics["R@1"] == 0.0 and metrics["R@10"] == 0.0 and metrics["MdR"] == n and metrics["MnR"] == n


def test_ties_count_against_the_ground_truth() -> None:
    # A constant matrix must not look perfect: every tied competitor is ranked ahead of the correct clip.
    assert text_to_video_ranks(np.zeros((5, 5)), range(5)).tolist() == [5] * 5
    sim = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0], [0.5, 0.2, 0.9]])
    assert text_to_video_ranks(sim, [0, 1, 2]).tolist() == [2, 2, 1]
    # Same answer whatever the column order: the tie rule does not depend on candidate numbering.
    perm = [2, 0, 1]
    owner = [perm.index(i) for i in range(3)]
    assert text_to_video_ranks(sim[:, perm], owner).tolist() == [2, 2, 1]


def test_known_ranks_give_known_recalls() -> None:
    # Caption i's clip is placed at rank i + 1 by construction.
    n = 15
    sim = np.zeros((n, n))
    for i in range(n):
        others = [j for j in range(n) if j != i]
        order = [*others[:i], i, *others[i:]]
        sim[i, order] = np.linspace(1.0, 0.0, n)
    assert text_to_video_ranks(sim, range(n)).tolist() == list(range(1, n + 1))
    t2v = retrieval_metrics(sim)["t2v"]
    assert t2v["R@1"] == pytest.approx(100 / 15)
    assert t2v["R@5"] == pytest.approx(500 / 15)
    assert t2v["R@10"] == pytest.approx(1000 / 15)
    assert t2v["MdR"] == 8.0 and t2v["MnR"] == 8.0


def test_video_to_text_with_several_captions_per_clip_uses_the_best_caption() -> None:
    # captions 0, 1 -> clip 0; caption 2 -> clip 1
    sim = np.array([[0.1, 0.0], [0.9, 0.5], [0.2, 0.8]])
    owner = [0, 0, 1]
    assert video_to_text_ranks(sim, owner).tolist() == [1, 1]
    # Clip 1's own caption scores 0.8 and caption 0 (of clip 0) beats it with 0.95: rank 2.
    sim2 = np.array([[0.1, 0.95], [0.9, 0.5], [0.2, 0.8]])
    assert video_to_text_ranks(sim2, owner).tolist() == [1, 2]
    assert text_to_video_ranks(sim2, owner).tolist() == [2, 1, 1]


def test_bad_inputs_are_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="NaN"):
        retrieval_metrics(np.full((2, 2), np.nan))
    with pytest.raises(ValueError, match="one clip index per caption"):
        text_to_video_ranks(np.zeros((3, 3)), [0, 1])
    with pytest.raises(ValueError, match="at least one caption"):
        video_to_text_ranks(np.zeros((2, 3)), [0, 1])


def test_gallery_only_clips_are_candidates_never_queries() -> None:
    # captions 0, 1 ask for clips 0, 1; caption 2 belongs to clip 2, a distractor (candidate only)
    sim = np.array([[0.5, 0.1, 0.9], [0.2, 0.8, 0.1], [0.0, 0.0, 1.0]])
    metrics = retrieval_metrics(sim, [0, 1, 2], queries=[0, 1])
    assert metrics["t2v"]["R@1"] == 50.0  # the distractor beats clip 0 for caption 0
    assert metrics["t2v"]["MRR"] == pytest.approx((1 / 2 + 1) / 2)
    assert metrics["v2t"]["R@1"] == 100.0  # clips 0 and 1 ranked among the asked captions only
    everything = retrieval_metrics(sim, [0, 1, 2])
    assert everything["t2v"]["MRR"] == pytest.approx((1 / 2 + 1 + 1) / 3)
