"""Pre-training: reproducible for a seed, never trains on held-out scenes, saves loadable checkpoints."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import open_clip
import pytest
import torch
from safetensors.torch import load_file

from videoseek.toy.model import TOY_MODEL_NAME, checkpoint_info, register_toy_model_config, toy_tokenizer
from videoseek.toy.pretrain import DomainABatches, PretrainConfig, pretrain
from videoseek.toy.scene import all_domain_a_scenes

TINY = {"steps": 2, "batch_size": 8, "warmup_steps": 1, "threads": 1}


def _silent(_: str) -> None:
    pass


def test_same_seed_gives_identical_weights(tmp_path: Path) -> None:
    first = pretrain(tmp_path / "a.safetensors", PretrainConfig(**TINY), log=_silent)
    second = pretrain(tmp_path / "b.safetensors", PretrainConfig(**TINY), log=_silent)
    other = pretrain(tmp_path / "c.safetensors", PretrainConfig(**TINY, seed=1), log=_silent)
    assert first.checkpoint.read_bytes() == second.checkpoint.read_bytes()
    a, c = (load_file(str(r.checkpoint)) for r in (first, other))
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert first.steps_done == 2 and not first.truncated


def test_saved_checkpoint_loads_with_open_clip(tmp_path: Path) -> None:
    result = pretrain(tmp_path / "toy.safetensors", PretrainConfig(**TINY), log=_silent)
    register_toy_model_config()
    model = open_clip.create_model(TOY_MODEL_NAME, pretrained=str(result.checkpoint))
    stored = load_file(str(result.checkpoint))
    assert torch.equal(model.logit_scale.detach(), stored["logit_scale"].float())


def test_deadline_stops_early_and_says_so(tmp_path: Path) -> None:
    result = pretrain(tmp_path / "t.safetensors", PretrainConfig(**TINY), deadline_minutes=0.0, log=_silent)
    assert result.truncated and result.steps_done == 0
    info = checkpoint_info(result.checkpoint)
    assert info["truncated"] is True and info["recipe"]["steps"] == TINY["steps"]


def test_batches_hold_distinct_training_scenes_only() -> None:
    test_keys = {s.key for s in all_domain_a_scenes() if s.split == "test"}
    batches = DomainABatches(seed=0, batch_size=64, image_size=64)
    for _ in range(3):
        keys = [scene.key for scene in batches.sample_scenes()]
        assert len(set(keys)) == 64 and not set(keys) & test_keys
    images, tokens = batches.next()
    assert images.shape == (64, 3, 64, 64) and tokens.shape == (64, 32)


def test_textured_batches_show_b_looks_on_training_scenes_and_name_the_texture() -> None:
    train_keys = {s.key for s in all_domain_a_scenes() if s.split == "train"}
    plain = DomainABatches(seed=0, batch_size=32, image_size=64, hard_negative_fraction=0.5)
    textured = DomainABatches(0, 32, 64, hard_negative_fraction=0.5, textured_fraction=1.0)
    assert all(scene.texture == "plain" for scene in plain.sample_scenes())
    scenes = textured.sample_scenes()
    assert all(scene.texture != "plain" for scene in scenes) and len({s.key for s in scenes}) == 32
    # the texture is drawn over a training scene: held-out plain stills stay unseen
    assert all(replace(scene, texture="plain").key in train_keys for scene in scenes)
    texture_words = {"striped", "checkered", "grainy"}
    tokenizer = toy_tokenizer()
    for _ in range(2):
        _, tokens = textured.next()
        decoded = [tokenizer.decode(row.tolist()) for row in tokens]
        assert all(texture_words & set(text.replace(",", " ").split()) for text in decoded)


def test_the_textured_fraction_is_validated() -> None:
    with pytest.raises(ValueError, match="textured_fraction"):
        PretrainConfig(textured_fraction=1.5)
