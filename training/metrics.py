"""Retrieval metrics from a text x clip similarity matrix: R@1/5/10, median rank (MdR), mean rank (MnR) and mean
reciprocal rank (MRR: finer than R@k on a small set, where R@1 moves in steps of 100/n).

Ties are resolved against the ground truth: a candidate that scores exactly the same as the correct one counts
as ranked above it. The result is deterministic (independent of sort order and of how candidates happen to be
numbered) and never flatters a model: a constant similarity matrix gets the worst rank, not R@1 = 100.

Several captions may belong to one clip. Text-to-video ranks each caption's own clip among all clips.
Video-to-text ranks, for each clip, its best-scored caption among all captions, where the clip's other
captions are not competitors (the usual convention for multi-caption sets; with one caption per clip, as in
MSR-VTT 1k-A, it is the plain transpose).

A gallery can hold clips that are candidates only (``queries`` leaves their captions out): other videos of a
collection, so a small validation set is ranked among as many clips as the search would rank it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RECALL_AT = (1, 5, 10)


def text_to_video_ranks(sim: np.ndarray, text_to_video: Sequence[int]) -> np.ndarray:
    """1-based rank of each caption's clip; ``sim`` is [captions, clips]."""
    sim = _checked(sim, text_to_video)
    owner = np.asarray(text_to_video)
    correct = sim[np.arange(sim.shape[0]), owner]
    ahead: np.ndarray = (sim >= correct[:, None]).sum(axis=1)  # includes the correct clip itself
    return ahead.astype(np.int64)


def video_to_text_ranks(sim: np.ndarray, text_to_video: Sequence[int]) -> np.ndarray:
    """1-based rank of each clip's best caption among all captions; clips without a caption are an error."""
    sim = _checked(sim, text_to_video)
    owner = np.asarray(text_to_video)
    n_clips = sim.shape[1]
    mine = owner[:, None] == np.arange(n_clips)[None, :]  # [captions, clips]
    if not mine.any(axis=0).all():
        raise ValueError("every clip needs at least one caption to rank video-to-text")
    best = np.where(mine, sim, -np.inf).max(axis=0)  # [clips]
    others_ahead: np.ndarray = ((sim >= best[None, :]) & ~mine).sum(axis=0)
    return (others_ahead + 1).astype(np.int64)


def summarize_ranks(ranks: np.ndarray) -> dict[str, float]:
    """R@k in percent, MdR and MnR (lower is better) and MRR (0-1, higher is better) of 1-based ranks."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if ranks.size == 0:
        raise ValueError("no ranks to summarize")
    out = {f"R@{k}": float((ranks <= k).mean() * 100.0) for k in RECALL_AT}
    out["MdR"] = float(np.median(ranks))
    out["MnR"] = float(ranks.mean())
    out["MRR"] = float((1.0 / ranks).mean())
    return out


def retrieval_metrics(
    sim: np.ndarray, text_to_video: Sequence[int] | None = None, queries: Sequence[int] | None = None
) -> dict[str, dict[str, float]]:
    """``{"t2v": {...}, "v2t": {...}}`` for ``sim`` [captions, clips]; default: caption i belongs to clip i.

    ``queries``: the captions asked (default: all). Text-to-video ranks their clips among every clip;
    video-to-text ranks the clips they belong to among the asked captions.
    """
    if text_to_video is None:
        text_to_video = range(np.asarray(sim).shape[0])
    if queries is None:
        t2v = text_to_video_ranks(sim, text_to_video)
        return {"t2v": summarize_ranks(t2v), "v2t": summarize_ranks(video_to_text_ranks(sim, text_to_video))}
    asked = np.asarray(queries, dtype=np.int64)
    owners = np.asarray(text_to_video)[asked]
    t2v = text_to_video_ranks(np.asarray(sim)[asked], owners.tolist())
    clips, local = np.unique(owners, return_inverse=True)  # the clips some asked caption belongs to
    v2t = video_to_text_ranks(np.asarray(sim)[asked][:, clips], local.tolist())
    return {"t2v": summarize_ranks(t2v), "v2t": summarize_ranks(v2t)}


def _checked(sim: np.ndarray, text_to_video: Sequence[int]) -> np.ndarray:
    sim = np.asarray(sim, dtype=np.float64)
    if sim.ndim != 2:
        raise ValueError(f"similarity must be a [captions, clips] matrix, got shape {sim.shape}")
    owner = np.asarray(text_to_video)
    if owner.shape != (sim.shape[0],):
        raise ValueError(f"need one clip index per caption ({sim.shape[0]}), got {owner.shape}")
    if owner.size and (owner.min() < 0 or owner.max() >= sim.shape[1]):
        raise ValueError("clip index out of range")
    if np.isnan(sim).any():
        raise ValueError("similarity matrix contains NaN (did training diverge?)")
    return sim
