"""Module surgery: where adapters go in an open_clip CLIP, without forking any open_clip code.

open_clip's residual blocks compute ``x = x + ls_1(attn(ln_1(x)))`` and ``x = x + ls_2(mlp(ln_2(x)))``, where
``ls_1``/``ls_2`` are identities for OpenAI-style configs (LayerScale otherwise). Replacing each with an
:class:`AdapterSite` that returns ``y + A(y)`` for ``y = ls(h)`` gives exactly the paper's
``x = x + (h + A(h))`` without touching the block's forward. Both ``ResidualAttentionBlock`` and
``CustomResidualAttentionBlock`` have these two attributes at that place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import torch
from open_clip.transformer import Transformer
from torch import nn

from videoseek.adapter.config import (
    SITES,
    AdapterConfig,
    AdapterConfigError,
    BackboneShape,
    Site,
    Tower,
    TowerShape,
    adapter_tensor_shapes,
    shared_prefix,
    site_prefix,
)
from videoseek.adapter.layer import AdapterModule, CrossModalAdapter, SharedUpProjection

_SITE_ATTRS: dict[Site, str] = {"attn": "ls_1", "mlp": "ls_2"}


class UnsupportedBackbone(AdapterConfigError):
    """The model has no open_clip transformer blocks to put adapters in (timm or Hugging Face towers)."""


class AlreadyAdapted(RuntimeError):
    """The model's blocks already carry adapter sites; build adapters on a fresh model (``load_clip``)."""


class AdapterSite(nn.Module):
    """Stands in for a block's ``ls_1``/``ls_2``: ``y = inner(h)``, then ``y + delta(y)``.

    ``delta`` is a :class:`CrossModalAdapter` (one adapter, trainable) or a router that returns ``None`` when
    no adapter applies to the current forward (the output is then exactly the plain CLIP's).
    """

    def __init__(self, inner: nn.Module, delta: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.delta = delta

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.inner(h)
        delta: torch.Tensor | None = self.delta(y)
        return y if delta is None else y + delta


def tower_transformers(model: nn.Module) -> dict[Tower, Transformer]:
    """The open_clip ``Transformer`` of each tower (``CLIP`` and ``CustomTextCLIP`` layouts)."""
    visual = getattr(getattr(model, "visual", None), "transformer", None)
    text_owner = model.text if hasattr(model, "text") else model
    text = getattr(text_owner, "transformer", None)
    towers: dict[Tower, object] = {"vision": visual, "text": text}
    for name, transformer in towers.items():
        if not isinstance(transformer, Transformer):
            raise UnsupportedBackbone(
                f"the {name} tower of {type(model).__name__} is not an open_clip Transformer "
                f"({type(transformer).__name__}); adapters need open_clip's own ViT/text towers (e.g. ViT-B-32)"
            )
    return towers


def backbone_shape(model: nn.Module) -> BackboneShape:
    towers = tower_transformers(model)
    return BackboneShape(
        vision=TowerShape(width=towers["vision"].width, layers=len(towers["vision"].resblocks)),
        text=TowerShape(width=towers["text"].width, layers=len(towers["text"].resblocks)),
    )


def iter_sites(model: nn.Module) -> Iterator[tuple[Tower, int, Site, nn.Module, bool]]:
    """``(tower, layer, site, block, batch_first)`` for every adapter site, vision tower first."""
    for tower, transformer in tower_transformers(model).items():
        for layer, block in enumerate(transformer.resblocks):
            for site, attr in _SITE_ATTRS.items():
                if not hasattr(block, attr):
                    raise UnsupportedBackbone(f"{type(block).__name__} has no {attr}; cannot place adapters")
                yield tower, layer, site, block, transformer.batch_first


DeltaFactory = Callable[[Tower, int, Site, bool], nn.Module]


def wrap_sites(model: nn.Module, towers: tuple[Tower, ...], make_delta: DeltaFactory) -> None:
    """Wrap every site of ``towers`` in an :class:`AdapterSite` whose delta is ``make_delta(tower, layer, site,
    batch_first)``. Refuses a model that already has adapter sites."""
    targets = [entry for entry in iter_sites(model) if entry[0] in towers]
    if any(isinstance(getattr(block, _SITE_ATTRS[site]), AdapterSite) for _, _, site, block, _ in targets):
        raise AlreadyAdapted("this model already has adapters injected; start from a fresh load_clip()")
    for tower, layer, site, block, batch_first in targets:
        attr = _SITE_ATTRS[site]
        setattr(block, attr, AdapterSite(getattr(block, attr), make_delta(tower, layer, site, batch_first)))


def has_adapter_sites(model: nn.Module) -> bool:
    return any(isinstance(m, AdapterSite) for m in model.modules())


@dataclass(eq=False)
class InjectedAdapter:
    """Handles on the adapter modules injected into one model (for training and export)."""

    config: AdapterConfig
    shape: BackboneShape
    adapters: dict[tuple[Tower, int, Site], CrossModalAdapter]
    shared: dict[tuple[int, Site], SharedUpProjection]

    def named_tensors(self) -> dict[str, torch.Tensor]:
        """Every adapter tensor by its file name; a shared tensor appears once, under ``shared.*``."""
        named: dict[str, torch.Tensor] = {}
        for (tower, layer, site), adapter in self.adapters.items():
            for part, tensor in adapter.trainable_tensors().items():
                named[f"{site_prefix(tower, layer, site)}.{part}"] = tensor
        for (layer, site), shared in self.shared.items():
            for part, tensor in shared.trainable_tensors().items():
                named[f"{shared_prefix(layer, site)}.{part}"] = tensor
        return named

    def parameters(self) -> list[nn.Parameter]:
        return [t for t in self.named_tensors().values() if isinstance(t, nn.Parameter)]

    @torch.no_grad()
    def load_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Copy adapter tensors (e.g. from an adapter file) into the injected modules; names must match."""
        own = self.named_tensors()
        if set(own) != set(tensors):
            missing, extra = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
            raise AdapterConfigError(
                f"adapter tensors do not match this adapter's layout (missing {missing[:3]}, unexpected "
                f"{extra[:3]}); was the file made with another config?"
            )
        for name, target in own.items():
            if tuple(tensors[name].shape) != tuple(target.shape):
                raise AdapterConfigError(
                    f"{name}: shape {tuple(tensors[name].shape)}, expected {tuple(target.shape)}"
                )
            target.copy_(tensors[name])


def inject_adapters(model: nn.Module, config: AdapterConfig) -> InjectedAdapter:
    """Put fresh (paper-initialised) adapters into ``model``'s blocks; returns handles on them.

    The shared up-projection of each (layer, site) is ONE module, referenced by the vision and the text adapter.
    """
    shape = backbone_shape(model)
    config.check_backbone(shape)
    reference = next(model.parameters())
    shared_dim = config.effective_shared_dim
    shared = {
        (layer, site): SharedUpProjection(config.rank, shared_dim, config.init_std)
        for layer in range(shape.vision.layers)
        for site in SITES
        if shared_dim
    }
    adapters: dict[tuple[Tower, int, Site], CrossModalAdapter] = {}

    def make_adapter(tower: Tower, layer: int, site: Site, batch_first: bool) -> nn.Module:
        adapter = CrossModalAdapter(
            shape.tower(tower).width, config.rank, shared.get((layer, site)), config.init_std
        )
        adapters[(tower, layer, site)] = adapter
        return adapter

    wrap_sites(model, config.adapted_towers, make_adapter)
    for module in (*adapters.values(), *shared.values()):
        module.to(device=reference.device, dtype=reference.dtype)
    injected = InjectedAdapter(config=config, shape=shape, adapters=adapters, shared=shared)
    expected = adapter_tensor_shapes(config, shape)
    actual = {name: tuple(t.shape) for name, t in injected.named_tensors().items()}
    assert actual == expected, "adapter modules disagree with adapter_tensor_shapes"
    return injected


def adapter_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Exactly the adapter tensors in ``model``, each once (``modules()`` visits a shared module once)."""
    params: list[nn.Parameter] = []
    for module in model.modules():
        if isinstance(module, AdapterModule):
            params.extend(module.trainable_tensors().values())
    return params


def mark_only_adapters_trainable(model: nn.Module) -> list[nn.Parameter]:
    """Freeze every CLIP weight (``logit_scale`` included) and unfreeze the adapters; returns the adapters."""
    model.requires_grad_(False)
    params = adapter_parameters(model)
    for param in params:
        param.requires_grad_(True)
    return params
