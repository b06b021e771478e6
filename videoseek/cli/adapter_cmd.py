"""``videoseek adapter-info`` (adapter size for a backbone) and ``videoseek adapter-show DIR`` (an adapter file).

torch and open_clip are imported inside the commands so that other ``videoseek`` commands start fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from videoseek.cli.common import fail
from videoseek.model_spec import ModelSpec

if TYPE_CHECKING:
    from videoseek.adapter import AdapterConfig


def _spec(model: str) -> ModelSpec:
    # A bare architecture name means its random-weight build: nothing is read or downloaded.
    return ModelSpec.parse(model) if ":" in model or model == "toy" else ModelSpec(kind="random", name=model)


def _info(spec: ModelSpec, config: AdapterConfig) -> dict[str, Any]:
    import open_clip

    from videoseek.adapter import (
        BackboneShape,
        adapter_parameters,
        backbone_shape,
        count_parameters,
        inject_adapters,
    )
    from videoseek.clip import ModelLoadError, load_clip

    if spec.kind == "random":
        architecture = open_clip.get_model_config(spec.name)
        if architecture is None:
            raise ModelLoadError(f"unknown open_clip model {spec.name!r}; try ViT-B-32 or ViT-B-16")
        config.check_backbone(BackboneShape.from_open_clip_config(architecture))  # fail before building
    clip = load_clip(spec)
    shape = backbone_shape(clip.model)
    clip_params = sum(p.numel() for p in clip.model.parameters())
    counted = count_parameters(config, shape)
    inject_adapters(clip.model, config)
    trainable = sum(p.numel() for p in adapter_parameters(clip.model))
    assert trainable == counted.trainable, "built adapter disagrees with the parameter formula"
    return {
        "model": str(spec),
        "adapter": config.to_dict(),
        "shares_weights": config.shares_weights,
        "backbone": shape.to_dict(),
        "trainable_params": trainable,
        "shared_params": counted.shared,
        "per_tower_params": counted.per_tower,
        "clip_params": clip_params,
        "percent_of_clip": round(100.0 * trainable / clip_params, 4),
        "adapter_bytes_fp32": 4 * trainable,
    }


def adapter_info(
    model: str = typer.Option(
        "ViT-B-32", help="open_clip architecture (random weights) or a full model spec."
    ),
    rank: int = typer.Option(8, help="Bottleneck width r."),
    shared_dim: int = typer.Option(16, help="Width d_s of the up-projection slice shared by both towers."),
    towers: str = typer.Option("both", help="both, vision or text."),
    share: bool = typer.Option(True, "--share/--no-share", help="Share the d_s slice between towers."),
) -> None:
    """Print an adapter's parameter counts for a backbone as JSON (builds it with random weights)."""
    from videoseek.adapter import AdapterConfig, AdapterConfigError
    from videoseek.clip import ModelLoadError

    try:
        config = AdapterConfig(rank=rank, shared_dim=shared_dim, towers=towers, share=share)  # type: ignore[arg-type]
        payload = _info(_spec(model), config)
    except (AdapterConfigError, ModelLoadError, ValueError) as exc:
        raise fail(str(exc)) from exc
    typer.echo(json.dumps(payload, indent=2))


def adapter_show(
    directory: Path = typer.Argument(..., help="An adapter directory (adapter_config.json)."),
) -> None:
    """Print an adapter file's version, config and base model as JSON (verifies its content hash)."""
    from videoseek.adapter import AdapterFileError, load_adapter

    try:
        adapter = load_adapter(directory)
    except AdapterFileError as exc:
        raise fail(str(exc)) from exc
    base = adapter.base.to_dict()
    base.pop("architecture")
    payload = {
        "version": adapter.version,
        "adapter": adapter.config.to_dict(),
        "shares_weights": adapter.config.shares_weights,
        "base_model": base,
        "backbone": adapter.shape.to_dict(),
        "trainable_params": sum(t.numel() for t in adapter.tensors.values()),
        "bytes": adapter.nbytes,
        "metadata": dict(adapter.metadata),
    }
    typer.echo(json.dumps(payload, indent=2, default=str))


def register(app: typer.Typer) -> None:
    app.command("adapter-info")(adapter_info)
    app.command("adapter-show")(adapter_show)
