"""Training does what it is for: retrieval gets better than the frozen model's."""

from __future__ import annotations

from pathlib import Path

import pytest

from videoseek.core.clip import load_clip
from videoseek.core.model_spec import ModelSpec
from videoseek.training.config import SamplingConfig, TrainConfig
from videoseek.training.data import load_dataset
from videoseek.training.frame_cache import FrameCache
from videoseek.training.loop import train


def _t2v_r1(row: dict) -> float:  # type: ignore[type-arg]
    return float(row["eval"]["text_conditioned"]["t2v"]["R@1"])


def test_a_short_run_fits_its_training_clips_better_than_zero_shot(
    tiny_spec: ModelSpec, toy_b_manifest: Path, tmp_path: Path
) -> None:
    # Fast stand-in for the held-out check below: a random tiny CLIP learns to match 8 toy clips to captions.
    dataset = load_dataset(toy_b_manifest)
    clip = load_clip(tiny_spec, "cpu")
    cache = FrameCache(tmp_path / "cache", SamplingConfig(max_frames=4, image_size=clip.image_size))
    cfg = TrainConfig(
        method="cma", epochs=20, batch_size=8, lr=3e-2, shared_dim=8, frames=4, warmup_frac=0.0, eval_every=20
    )
    result = train(clip, cfg, dataset, cache, eval_set=dataset, log=lambda _: None)
    before, after = _t2v_r1(result.history[0]), _t2v_r1(result.history[-1])
    assert after >= before + 25.0, (before, after)
    assert result.history[-1]["loss"] < 0.6 * 2.079  # ln(8): the loss of a model that cannot tell pairs apart


@pytest.mark.slow
@pytest.mark.xfail(
    reason="not yet reproduced: at small budgets adapters stay near zero-shot on toy domain B (README)",
    strict=False,
)
def test_toy_clip_adapted_on_domain_b_beats_zero_shot_on_held_out_clips(tmp_path: Path) -> None:
    from videoseek.toy.generate import generate_videos
    from videoseek.toy.model import toy_checkpoint_path

    if not toy_checkpoint_path().is_file():
        pytest.skip("toy CLIP checkpoint not built (videoseek toy pretrain)")
    train_set = load_dataset(generate_videos(tmp_path / "train", 160, seed=11, domain="B", split="train"))
    test_set = load_dataset(generate_videos(tmp_path / "test", 60, seed=12, domain="B", split="test"))
    clip = load_clip(ModelSpec.parse("toy"), "cpu")
    cache = FrameCache(tmp_path / "cache", SamplingConfig(max_frames=6, image_size=clip.image_size))
    cfg = TrainConfig(method="cma", epochs=4, batch_size=32, lr=2e-3, frames=6)
    result = train(clip, cfg, train_set, cache, eval_set=test_set, log=lambda _: None)
    before, after = _t2v_r1(result.history[0]), _t2v_r1(result.history[-1])
    assert after >= before + 10.0, (before, after)
