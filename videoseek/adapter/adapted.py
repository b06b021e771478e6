"""One trainable adapter inside a private CLIP: the path training and single-adapter evaluation use.

Serving many adapters at once is :mod:`videoseek.adapter.bank`'s job; this wraps a *fresh* model (never
the process-wide cached one) whose blocks get real, trainable adapter modules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from videoseek.adapter.config import AdapterConfig, AdapterConfigError
from videoseek.adapter.files import AdapterFile, save_adapter
from videoseek.adapter.model import (
    AlreadyAdapted,
    InjectedAdapter,
    has_adapter_sites,
    inject_adapters,
    mark_only_adapters_trainable,
)
from videoseek.clip import LoadedClip, load_clip
from videoseek.model_spec import ModelSpec


class AdaptedClip:
    """A frozen CLIP with one Cross-Modal Adapter injected; only the adapter's tensors require grad."""

    def __init__(self, clip: LoadedClip, config: AdapterConfig, init: AdapterFile | None = None) -> None:
        if has_adapter_sites(clip.model):
            raise AlreadyAdapted(
                "this CLIP already carries adapters (is it the shared get_clip() model used by an AdapterBank?); "
                "use AdaptedClip.from_spec(), which loads a private copy"
            )
        if init is not None:  # checked before the model is touched
            init.check_base(clip.identity)
            if init.config != config:
                raise AdapterConfigError(f"initial adapter has config {init.config}, expected {config}")
        self.clip = clip
        self.injected: InjectedAdapter = inject_adapters(clip.model, config)
        if init is not None:
            self.injected.load_tensors(init.tensors)
        mark_only_adapters_trainable(clip.model)

    @classmethod
    def from_spec(
        cls, spec: ModelSpec, config: AdapterConfig, device: str = "cpu", init: AdapterFile | None = None
    ) -> AdaptedClip:
        """Load a private frozen CLIP for ``spec`` and inject one adapter into it."""
        return cls(load_clip(spec, device), config, init)

    @property
    def model(self) -> nn.Module:
        return self.clip.model

    @property
    def config(self) -> AdapterConfig:
        return self.injected.config

    def parameters(self) -> list[nn.Parameter]:
        """The adapter tensors to optimise (shared ones once)."""
        return self.injected.parameters()

    def named_parameters(self) -> dict[str, nn.Parameter]:
        """Adapter tensors by file name (``...down.weight``, ``shared.3.mlp.bias``): for weight-decay groups."""
        return {k: v for k, v in self.injected.named_tensors().items() if isinstance(v, nn.Parameter)}

    def tokenize(self, texts: Sequence[str], context_length: int = 32) -> torch.Tensor:
        return self.clip.tokenize(texts, context_length)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Projected, unnormalised text features (with grad when enabled)."""
        return self.clip.encode_text(tokens)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Projected, unnormalised image features ``[B, D]`` for preprocessed images ``[B, 3, H, W]``."""
        weight = next(self.clip.model.visual.parameters())
        return self.clip.model.encode_image(images.to(device=weight.device, dtype=weight.dtype))

    def export(self, metadata: Mapping[str, Any] | None = None) -> AdapterFile:
        """A CPU snapshot of the adapter, ready for :func:`save_adapter` or an ``AdapterBank``."""
        tensors = {
            name: tensor.detach().to("cpu", torch.float32).clone()
            for name, tensor in self.injected.named_tensors().items()
        }
        return AdapterFile(
            config=self.injected.config,
            base=self.clip.identity,
            shape=self.injected.shape,
            tensors=tensors,
            metadata=dict(metadata or {}),
        )

    def save(self, directory: Path, metadata: Mapping[str, Any] | None = None) -> str:
        """Export and write the adapter to ``directory``; returns its version."""
        return save_adapter(self.export(metadata), directory)
