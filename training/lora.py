"""LoRA through the ``peft`` library: the baseline a practitioner would pick instead of the Cross-Modal Adapter.

Low-rank updates go on the MLP linear layers (``c_fc``, ``c_proj``) of every residual block of both towers,
with peft's own defaults otherwise (``lora_alpha`` 8, no dropout, ``lora_B`` zero so training starts at the
zero-shot model). The attention output projection is left out on purpose: open_clip's blocks use
``nn.MultiheadAttention``, whose forward reads ``out_proj.weight`` directly, so a LoRA wrapper there would be
silently skipped. The rank is matched to the Cross-Modal Adapter's parameter budget at the same settings
(:func:`lora_rank_for_budget`), so the comparison is at equal size.

LoRA is a study method: it makes no adapter file the service can serve (the service serves Cross-Modal
Adapters), like full fine-tuning. ``peft`` (and through it ``transformers``; the ``study`` extra) is imported
only when a LoRA run is set up: it takes seconds to import and nothing else needs it.
"""

from __future__ import annotations

import math

from torch import nn

from training.config import ConfigError
from videoseek.adapter import AdapterConfig, adapter_tensor_shapes, backbone_shape

LORA_TARGETS = ("c_fc", "c_proj")
LORA_ADAPTER_NAME = "study"


def _targets(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in LORA_TARGETS
    ]


def lora_params_per_rank(model: nn.Module) -> int:
    """Parameters one unit of LoRA rank adds: ``in + out`` per targeted linear layer."""
    return sum(module.in_features + module.out_features for _, module in _targets(model))


def lora_rank_for_budget(model: nn.Module, rank: int, shared_dim: int) -> int:
    """The LoRA rank whose size is nearest the Cross-Modal Adapter's at ``rank``/``shared_dim`` (at least 1)."""
    config = AdapterConfig(rank=rank, shared_dim=shared_dim, towers="both", share=True)
    budget = sum(math.prod(shape) for shape in adapter_tensor_shapes(config, backbone_shape(model)).values())
    per_rank = lora_params_per_rank(model)
    if per_rank == 0:
        raise ValueError(f"{type(model).__name__} has no {' or '.join(LORA_TARGETS)} linear layers for LoRA")
    return max(1, round(budget / per_rank))


def inject_lora(model: nn.Module, rank: int) -> list[nn.Parameter]:
    """Wrap the targeted layers with peft LoRA of ``rank`` in place; returns the LoRA tensors (the rest frozen)."""
    try:  # seconds to import: only LoRA runs pay for it
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError as exc:
        raise ConfigError(
            f"--method lora needs the peft library ({exc}): pip install 'videoseek[study]'"
        ) from exc

    model.requires_grad_(False)
    config = LoraConfig(r=rank, target_modules=list(LORA_TARGETS), lora_dropout=0.0, bias="none")
    inject_adapter_in_model(config, model, adapter_name=LORA_ADAPTER_NAME)
    trainable = [p for name, p in model.named_parameters() if "lora_" in name]
    for param in trainable:
        param.requires_grad_(True)
    return trainable
