"""Helpers for the adapter/CLIP tests (no tests here): tiny open_clip configs with random weights.

Imported by ``conftest.py`` (fixtures) and the ``test_adapter_*``/``test_clip_*``/``test_encoders_*`` modules.
"""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import torch

from videoseek.adapter import AdapterConfig, AdapterFile, BackboneShape, adapter_tensor_shapes
from videoseek.clip import BaseModelIdentity

TINY_NAME = "videoseek-test-tiny"
TINY_DEEP_NAME = "videoseek-test-tiny-deep"  # 3 vision vs 2 text layers: sharing by layer index impossible

TINY_CONFIG: dict[str, object] = {
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 48, "heads": 4, "layers": 2},
}
TINY_DEEP_CONFIG: dict[str, object] = {
    **TINY_CONFIG,
    "vision_cfg": {"image_size": 32, "layers": 3, "width": 64, "head_width": 32, "patch_size": 16},
}

TEXTS = ["a red ball bounces", "two dogs run on a beach at night", "a man cooks pasta", "snow falls slowly"]


def register_tiny_configs(directory: Path) -> None:
    """Register the tiny architectures with open_clip (idempotent within a process)."""
    if open_clip.get_model_config(TINY_NAME) is not None:
        return
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{TINY_NAME}.json").write_text(json.dumps(TINY_CONFIG))
    (directory / f"{TINY_DEEP_NAME}.json").write_text(json.dumps(TINY_DEEP_CONFIG))
    open_clip.add_model_config(directory)


def random_adapter_file(
    base: BaseModelIdentity, shape: BackboneShape, config: AdapterConfig, seed: int, std: float = 0.3
) -> AdapterFile:
    """An adapter with large random weights (and biases), so its effect on the features is clearly visible."""
    generator = torch.Generator().manual_seed(seed)
    tensors = {
        name: torch.randn(dims, generator=generator) * std
        for name, dims in adapter_tensor_shapes(config, shape).items()
    }
    return AdapterFile(config=config, base=base, shape=shape, tensors=tensors, metadata={"seed": seed})


def random_images(count: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(count, 3, size, size, generator=torch.Generator().manual_seed(seed))
