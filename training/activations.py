"""A QuickGELU that keeps half the activation memory for the backward pass, with the same forward math.

open_clip's ``QuickGELU`` (OpenAI CLIP's activation) computes ``x * sigmoid(1.702 x)`` as two autograd ops, so
for every MLP of every block the backward pass holds both ``x`` and ``sigmoid(1.702 x)``: two tensors of 4x the
model width per token, the largest activations an adapter run keeps. :class:`LeanQuickGELU` keeps ``x`` only
and recomputes the sigmoid in the backward pass (one cheap elementwise op). The forward output is bit-identical.
"""

from __future__ import annotations

import torch
from open_clip.transformer import QuickGELU
from torch import nn

_ALPHA = 1.702


class _QuickGELUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x * torch.sigmoid(_ALPHA * x)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        x: torch.Tensor = ctx.saved_tensors[0]  # type: ignore[attr-defined]
        s = torch.sigmoid(_ALPHA * x)
        return grad * (s + _ALPHA * x * s * (1.0 - s))


class LeanQuickGELU(nn.Module):
    """``x * sigmoid(1.702 x)``, saving only ``x`` for the backward pass."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled() or not x.requires_grad:
            return x * torch.sigmoid(_ALPHA * x)
        out: torch.Tensor = _QuickGELUFunction.apply(x)
        return out


def use_lean_activations(model: nn.Module) -> int:
    """Swap every open_clip ``QuickGELU`` in ``model`` for :class:`LeanQuickGELU`; returns how many."""
    swaps = [
        (parent, name)
        for parent in model.modules()
        for name, child in parent.named_children()
        if type(child) is QuickGELU
    ]
    for parent, name in swaps:
        setattr(parent, name, LeanQuickGELU())
    return len(swaps)
