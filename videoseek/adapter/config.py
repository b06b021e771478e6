"""What a Cross-Modal Adapter is made of, validated against the backbone it is meant for.

Pure data and arithmetic: nothing here touches a model, so a bad combination (ViT-L-14, a shared width larger
than a tower) is rejected before anything is built.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, get_args

Towers = Literal["both", "vision", "text"]
Tower = Literal["vision", "text"]
Site = Literal["attn", "mlp"]

TOWERS: tuple[Tower, ...] = ("vision", "text")
SITES: tuple[Site, ...] = ("attn", "mlp")

# Bottleneck r and shared width d_s the paper uses per dataset.
PAPER_SETTINGS: dict[str, tuple[int, int]] = {
    "msrvtt": (8, 16),
    "didemo": (8, 8),
    "msvd": (16, 16),
    "vatex": (16, 64),
    "activitynet": (16, 512),
}


class AdapterConfigError(ValueError):
    """An adapter setting is invalid or does not fit the backbone; the message says why and what to change."""


@dataclass(frozen=True)
class TowerShape:
    width: int
    layers: int


@dataclass(frozen=True)
class BackboneShape:
    """The widths and depths of a CLIP's two transformers: all an adapter's shape depends on."""

    vision: TowerShape
    text: TowerShape

    def tower(self, name: Tower) -> TowerShape:
        return self.vision if name == "vision" else self.text

    def to_dict(self) -> dict[str, dict[str, int]]:
        return {"vision": asdict(self.vision), "text": asdict(self.text)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Mapping[str, int]]) -> BackboneShape:
        return cls(vision=TowerShape(**data["vision"]), text=TowerShape(**data["text"]))

    @classmethod
    def from_open_clip_config(cls, config: Mapping[str, Any]) -> BackboneShape:
        """Shape from an open_clip model config dict (no model is built)."""
        vision, text = config["vision_cfg"], config["text_cfg"]
        return cls(
            vision=TowerShape(width=int(vision["width"]), layers=int(vision["layers"])),
            text=TowerShape(width=int(text.get("width", 512)), layers=int(text.get("layers", 12))),
        )


@dataclass(frozen=True)
class AdapterConfig:
    """One adapter per attention and per MLP sub-layer output, in every block of the chosen towers.

    ``rank`` is the bottleneck r, ``shared_dim`` the width d_s of the up-projection slice shared by the two
    towers (it writes the last d_s channels). Sharing only happens with ``towers="both"``, ``share=True`` and
    ``shared_dim > 0``; otherwise every up-projection is tower-specific and ``shared_dim`` is unused.
    """

    rank: int = 8
    shared_dim: int = 16
    towers: Towers = "both"
    share: bool = True
    init_std: float = 0.01

    def __post_init__(self) -> None:
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise AdapterConfigError(f"rank must be an integer >= 1, got {self.rank!r}")
        if isinstance(self.shared_dim, bool) or not isinstance(self.shared_dim, int) or self.shared_dim < 0:
            raise AdapterConfigError(f"shared_dim must be an integer >= 0, got {self.shared_dim!r}")
        if self.towers not in get_args(Towers):
            raise AdapterConfigError(f"towers must be one of both, vision, text; got {self.towers!r}")
        if not isinstance(self.share, bool):
            raise AdapterConfigError(f"share must be true or false, got {self.share!r}")
        if not self.init_std > 0:
            raise AdapterConfigError(f"init_std must be > 0 (the paper uses 0.01), got {self.init_std!r}")

    @property
    def adapted_towers(self) -> tuple[Tower, ...]:
        return TOWERS if self.towers == "both" else (self.towers,)

    @property
    def shares_weights(self) -> bool:
        return self.share and self.towers == "both" and self.shared_dim > 0

    @property
    def effective_shared_dim(self) -> int:
        return self.shared_dim if self.shares_weights else 0

    def check_backbone(self, shape: BackboneShape) -> None:
        """Raise :class:`AdapterConfigError` when this adapter cannot be built on ``shape``."""
        if not self.shares_weights:
            return
        if shape.vision.layers != shape.text.layers:
            raise AdapterConfigError(
                f"weight sharing pairs vision and text blocks by layer index, but this backbone has "
                f"{shape.vision.layers} vision and {shape.text.layers} text layers (as ViT-L-14 has); use a "
                "backbone with equal depths such as ViT-B-32 or ViT-B-16, or disable sharing (share=False, --no-share)"
            )
        narrowest = min(shape.vision.width, shape.text.width)
        if self.shared_dim > narrowest:
            raise AdapterConfigError(
                f"shared_dim {self.shared_dim} is larger than a tower width (vision {shape.vision.width}, "
                f"text {shape.text.width}); the shared slice must fit in both: use shared_dim <= {narrowest}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AdapterConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise AdapterConfigError(
                f"unknown adapter config keys {unknown}; expected some of {sorted(known)}"
            )
        return cls(**dict(data))


@dataclass(frozen=True)
class ParamCount:
    """Trainable parameters of one adapter; ``shared`` tensors are counted once (and included in ``trainable``)."""

    trainable: int
    shared: int
    per_tower: dict[Tower, int]


def site_prefix(tower: Tower, layer: int, site: Site) -> str:
    return f"{tower}.{layer}.{site}"


def shared_prefix(layer: int, site: Site) -> str:
    return f"shared.{layer}.{site}"


def adapter_tensor_shapes(config: AdapterConfig, shape: BackboneShape) -> dict[str, tuple[int, ...]]:
    """Every tensor of an adapter, by its name in the adapter file (nn.Linear layout: weight ``[out, in]``).

    The one place the tensor names are defined: the file format, module export and the bank all use it.
    """
    config.check_backbone(shape)
    rank, shared_dim = config.rank, config.effective_shared_dim
    shapes: dict[str, tuple[int, ...]] = {}
    for tower in config.adapted_towers:
        width = shape.tower(tower).width
        for layer in range(shape.tower(tower).layers):
            for site in SITES:
                prefix = site_prefix(tower, layer, site)
                shapes[f"{prefix}.down.weight"] = (rank, width)
                shapes[f"{prefix}.down.bias"] = (rank,)
                shapes[f"{prefix}.up.weight"] = (width - shared_dim, rank)
                shapes[f"{prefix}.up.bias"] = (width - shared_dim,)
    if shared_dim:
        for layer in range(shape.vision.layers):
            for site in SITES:
                shapes[f"{shared_prefix(layer, site)}.weight"] = (shared_dim, rank)
                shapes[f"{shared_prefix(layer, site)}.bias"] = (shared_dim,)
    return shapes


def count_parameters(config: AdapterConfig, shape: BackboneShape) -> ParamCount:
    """Parameter count from shapes alone (the numbers the paper reports); shared tensors counted once."""
    per_name = {name: math.prod(dims) for name, dims in adapter_tensor_shapes(config, shape).items()}
    per_tower = {
        t: sum(n for k, n in per_name.items() if k.startswith(f"{t}.")) for t in config.adapted_towers
    }
    shared = sum(n for k, n in per_name.items() if k.startswith("shared."))
    return ParamCount(trainable=sum(per_name.values()), shared=shared, per_tower=per_tower)
