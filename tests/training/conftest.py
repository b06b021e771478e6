"""Fixtures for the training tests: a tiny CLIP on disk and a few toy-world videos."""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import pytest
import torch
from safetensors.torch import save_file
from training_helpers import TINY_CLIP_CONFIG

from videoseek.clip import LoadedClip, load_clip
from videoseek.model_spec import ModelSpec


@pytest.fixture(scope="session")
def tiny_spec(tmp_path_factory: pytest.TempPathFactory) -> ModelSpec:
    """``local-dir:`` spec of a tiny random open_clip CLIP (the real loading path, no network)."""
    directory = tmp_path_factory.mktemp("tiny-clip")
    (directory / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP_CONFIG}))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = open_clip.CLIP(**TINY_CLIP_CONFIG)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, directory / "open_clip_model.safetensors"
    )
    return ModelSpec.parse(f"local-dir:{directory}")


@pytest.fixture
def tiny_clip(tiny_spec: ModelSpec) -> LoadedClip:
    return load_clip(tiny_spec, "cpu")


@pytest.fixture(scope="session")
def toy_b_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight short domain-B toy videos with captions (the toy world's generator)."""
    from videoseek.toy.generate import generate_videos

    return generate_videos(tmp_path_factory.mktemp("toy-b"), 8, seed=7, domain="B", durations_s=(2, 3))
