"""The guard: a retrained adapter replaces what serves only if it ranks held-out pairs better, beyond noise.

Both sides, the candidate and what serves now (the collection's adapter, or plain CLIP), rank the same held-out
captions against the same held-out clips with the search's own scoring (the run config's ``pooling`` and
``tau``, which a retrain takes from ``settings.search``), so the comparison is the one a user of ``/search``
would see on those videos.

The decision is a paired test on reciprocal ranks (1/rank of each caption's own clip: R@1 counts only the top
place and moves in steps of 100/n on a small split, the reciprocal rank also credits a clip moved from 9th to
2nd). With ``d`` the per-caption gains, the candidate is installed when ``mean(d) > Z * sd(d) / sqrt(n)``: a
one-sided test at about 95% (``Z`` = 1.645), and by at least ``MIN_GAIN``, so a candidate no better than what serves is installed about one
time in twenty at most, and one trained on shuffled captions (whose held-out captions are shuffled too) is
kept. Fewer than ``MIN_PAIRS`` held-out captions cannot tell anything apart: the current version is kept
(``force`` installs anyway).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from training.config import TrainConfig
from training.data import ClipDataset, ClipRecord, as_gallery_only
from training.evaluate import embed_dataset
from training.metrics import summarize_ranks, text_to_video_ranks
from training.run import DataPlan, prepare_run
from training.similarity import chunked_scores
from videoseek.adapter import AdaptedClip, load_adapter
from videoseek.model_spec import ModelSpec
from videoseek.pooling_defaults import POOLINGS, Pooling

Z_ONE_SIDED_95 = 1.645
MIN_PAIRS = 5
# A gain smaller than this is no gain, whatever the noise (float round-off of an unchanged model is not one).
MIN_GAIN = 0.005
# Other videos of the collection ranked among the held-out clips: a larger gallery, finer ranks.
MAX_DISTRACTORS = 100


@dataclass(frozen=True)
class Verdict:
    """What the guard decided and the numbers it decided on."""

    install: bool
    why: str
    current: dict[str, float] | None  # R@1, R@5, R@10, MdR, MnR, MRR on the held-out split
    candidate: dict[str, float] | None
    pairs: int
    gain: float | None = None  # mean reciprocal-rank gain of the candidate
    noise: float | None = None  # what the gain had to exceed
    # pooling -> {"current": metrics, "candidate": metrics}: the same pairs under each pooling, for the owner
    by_pooling: dict[str, dict[str, dict[str, float]]] | None = None

    def validation(self) -> dict[str, Any]:
        """The task result's ``validation`` entry."""
        out: dict[str, Any] = {"current": self.current, "candidate": self.candidate, "pairs": self.pairs}
        if self.gain is not None:
            out["mrr_gain"], out["noise"] = round(self.gain, 4), round(float(self.noise or 0.0), 4)
        if self.by_pooling is not None:
            out["by_pooling"] = self.by_pooling
        return out


def judge_by_pooling(
    current: dict[Pooling, np.ndarray],
    candidate: dict[Pooling, np.ndarray],
    current_pooling: Pooling,
    candidate_pooling: Pooling,
) -> Verdict:
    """:func:`judge` on what each side's searches would rank with (the version serving now under its pooling,
    the candidate under the one it would serve with), with every pooling's metrics beside the verdict."""
    verdict = judge(current[current_pooling], candidate[candidate_pooling])
    if not verdict.pairs:
        return verdict
    both: dict[str, dict[str, dict[str, float]]] = {
        p: {"current": rank_metrics(current[p]), "candidate": rank_metrics(candidate[p])} for p in current
    }
    return replace(verdict, by_pooling=both)


@dataclass(frozen=True)
class PoolingChoice:
    """The pooling a candidate would serve with, and why (``chosen``: another than ``search.pooling``)."""

    pooling: Pooling
    chosen: bool
    why: str
    dev: dict[str, dict[str, float]] | None = None  # pooling -> the candidate's metrics on the dev pairs

    def record(self) -> dict[str, Any]:
        """The training record's ``serving`` entry: ``pooling`` only where it was chosen (else the version
        follows ``search.pooling``, whatever it is set to later)."""
        return {"pooling": self.pooling if self.chosen else None, "why": self.why, "dev": self.dev}


def choose_pooling(dev: dict[Pooling, np.ndarray] | None, default: Pooling) -> PoolingChoice:
    """``default`` (``search.pooling``), unless the candidate's reciprocal ranks on the dev pairs under
    another pooling beat it there beyond noise (:func:`judge`'s test; the guard then judges the choice on
    its own held-out videos, which the choice never saw)."""
    if dev is None:
        return PoolingChoice(default, False, f"no dev pairs to choose on: {default}, as search.pooling says")
    metrics: dict[str, dict[str, float]] = {p: rank_metrics(ranks) for p, ranks in dev.items()}
    for other in POOLINGS:
        if other == default:
            continue
        verdict = judge(dev[default], dev[other])
        if verdict.install:
            why = (
                f"{other} ranks {verdict.pairs} dev captions better than {default}: mean reciprocal rank "
                f"+{verdict.gain:.3f} > noise {verdict.noise:.3f}"
            )
            return PoolingChoice(other, True, why, metrics)
    return PoolingChoice(default, False, f"no pooling ranks the dev captions better than {default}", metrics)


def held_out_ranks_by_pooling(
    spec: ModelSpec,
    cfg: TrainConfig,
    held_out: ClipDataset,
    data: DataPlan,
    adapter_dir: Path | None,
    distractors: Sequence[ClipRecord] = (),
) -> dict[Pooling, np.ndarray]:
    """1-based rank of each held-out caption's clip among the held-out clips and ``distractors`` (other videos
    of the collection, as the search would have them among its candidates), scored as the search scores, under
    each pooling it can use (``POOLINGS``) from one embedding of the split: the verdict takes ``cfg.pooling``'s
    (the search's), the others tell an owner what another ``search.pooling`` would do."""
    gallery = ClipDataset([*held_out.records, *as_gallery_only(distractors)], held_out.source)
    plan = DataPlan(train=None, eval=gallery, cache_dir=data.cache_dir, on_bad="skip", limits=data.limits)
    run = prepare_run(spec, cfg, plan)
    assert run.eval is not None
    if adapter_dir is not None:
        adapter = load_adapter(adapter_dir, expected_base=run.clip.identity)
        AdaptedClip(run.clip, adapter.config, init=adapter)  # adapts the loaded model in place
    emb = embed_dataset(run.clip, run.eval, run.cache, context_length=cfg.text_context_length, amp=cfg.amp)
    asked = run.eval.query_rows()  # the distractors' rows go
    owners = [emb.text_to_video[i] for i in asked]
    ranks = {}
    for pooling in POOLINGS:
        sim = chunked_scores(emb.text, emb.frames, emb.mask, run.clip.logit_scale, pooling, cfg.tau)
        ranks[pooling] = text_to_video_ranks(sim.numpy()[asked], owners)
    return ranks


def rank_metrics(ranks: np.ndarray) -> dict[str, float]:
    return {key: round(value, 4) for key, value in summarize_ranks(ranks).items()}


def judge(current: np.ndarray, candidate: np.ndarray) -> Verdict:
    """Install the candidate only if its reciprocal ranks beat the current ones beyond the split's noise."""
    n = len(current)
    if n != len(candidate):
        raise ValueError(f"both sides must rank the same captions ({n} vs {len(candidate)})")
    if n < MIN_PAIRS:
        return Verdict(
            False,
            f"{n} held-out caption(s) cannot tell a better adapter from noise (the guard needs {MIN_PAIRS}): "
            "caption more videos, or retrain with force",
            rank_metrics(current) if n else None,
            rank_metrics(candidate) if n else None,
            n,
        )
    gains = 1.0 / candidate - 1.0 / current
    gain = float(gains.mean())
    noise = Z_ONE_SIDED_95 * float(gains.std(ddof=1)) / math.sqrt(n)
    install = gain > max(noise, MIN_GAIN)
    why = (
        f"the candidate ranks {n} held-out captions better: mean reciprocal rank +{gain:.3f} > noise {noise:.3f}"
        if install
        else f"the candidate is not better beyond noise on {n} held-out captions: mean reciprocal rank "
        f"{gain:+.3f}, needed more than {noise:.3f}"
    )
    return Verdict(install, why, rank_metrics(current), rank_metrics(candidate), n, gain, noise)
