"""Fixtures of the CLIP/adapter tests: a tiny registered open_clip architecture with seeded random weights."""

from __future__ import annotations

import pytest
from adapter_kit import TINY_NAME, register_tiny_configs

from videoseek.clip import LoadedClip, load_clip
from videoseek.model_spec import ModelSpec


@pytest.fixture(scope="session")
def tiny_spec(tmp_path_factory: pytest.TempPathFactory) -> ModelSpec:
    register_tiny_configs(tmp_path_factory.mktemp("open_clip_configs"))
    return ModelSpec.parse(f"{TINY_NAME}:random")


@pytest.fixture
def tiny_clip(tiny_spec: ModelSpec) -> LoadedClip:
    """A fresh (private) tiny CLIP: tests may inject adapters into it."""
    return load_clip(tiny_spec)
