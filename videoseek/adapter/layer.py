"""The adapter's math: A(h) = up(quick_gelu(down(h))), with the up-projection's last d_s outputs shared.

Only tensors and arithmetic live here; where adapters are placed in a CLIP is ``model.py``'s job.
Each module declares the tensors it owns through ``trainable_tensors()``; a :class:`SharedUpProjection` is owned
by itself and merely referenced by the vision and text adapters of the same (layer, site).
"""

from __future__ import annotations

import warnings
from typing import cast

import torch
from torch import nn
from torch.nn import functional


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    """The activation the authors' code asserts (the paper's text says GELU)."""
    return x * torch.sigmoid(1.702 * x)


def _init_weight(weight: torch.Tensor, std: float) -> None:
    # As the authors' code: trunc_normal_ with its default absolute bounds [-2, 2], so at std 0.01 the draw is
    # a plain N(0, 0.01^2) whose std really is 0.01.
    nn.init.trunc_normal_(weight, mean=0.0, std=std)


class AdapterModule(nn.Module):
    """Base of every module holding adapter tensors; ``trainable_tensors`` lists what this module owns."""

    def trainable_tensors(self) -> dict[str, nn.Parameter]:
        raise NotImplementedError


class SharedUpProjection(AdapterModule):
    """The r -> d_s slice of the up-projection shared by both towers at one (layer, site)."""

    def __init__(self, rank: int, shared_dim: int, init_std: float = 0.01) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(shared_dim, rank))
        self.bias = nn.Parameter(torch.zeros(shared_dim))
        _init_weight(self.weight, init_std)

    def trainable_tensors(self) -> dict[str, nn.Parameter]:
        return {"weight": self.weight, "bias": self.bias}


class CrossModalAdapter(AdapterModule):
    """Bottleneck adapter d -> r -> d for one sub-layer of one tower.

    The output is ``concat(up(z), shared(z))``: the tower-specific up-projection writes the first d - d_s
    channels and the shared one the last d_s. The residual around the adapter is the caller's (``y + A(y)``).
    """

    def __init__(
        self, width: int, rank: int, shared: SharedUpProjection | None = None, init_std: float = 0.01
    ) -> None:
        super().__init__()
        shared_dim = 0 if shared is None else shared.weight.shape[0]
        if shared is not None and shared.weight.shape[1] != rank:
            raise ValueError(f"shared projection has rank {shared.weight.shape[1]}, adapter has {rank}")
        if shared_dim > width:
            raise ValueError(f"shared width {shared_dim} exceeds the stream width {width}")
        self.down = nn.Linear(width, rank)
        with warnings.catch_warnings():  # d_s == d leaves an empty unique slice (ActivityNet: 512 on text)
            warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
            self.up = nn.Linear(rank, width - shared_dim)
        # Registered here as well so .to()/requires_grad_ reach it from either tower; module traversal and
        # parameters() de-duplicate it, and it is listed (and saved) once, by its owner.
        self.shared = shared
        for linear in (self.down, self.up):
            if linear.weight.numel():
                _init_weight(linear.weight, init_std)
            nn.init.zeros_(linear.bias)

    def trainable_tensors(self) -> dict[str, nn.Parameter]:
        tensors = {
            "down.weight": self.down.weight,
            "down.bias": self.down.bias,
            "up.weight": self.up.weight,
            "up.bias": self.up.bias,
        }
        return {name: cast("nn.Parameter", tensor) for name, tensor in tensors.items()}

    def full_up(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole r -> d up-projection (weight ``[d, r]``, bias ``[d]``), shared slice last."""
        if self.shared is None:
            return self.up.weight, self.up.bias
        return (
            torch.cat([self.up.weight, self.shared.weight], dim=0),
            torch.cat([self.up.bias, self.shared.bias], dim=0),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        # One matmul over the concatenated [d, r] weight instead of concatenating [.., d] activations.
        up_weight, up_bias = self.full_up()
        return functional.linear(quick_gelu(self.down(h)), up_weight, up_bias)


def adapter_delta(
    h: torch.Tensor,
    down_weight: torch.Tensor,
    down_bias: torch.Tensor,
    up_weight: torch.Tensor,
    up_bias: torch.Tensor,
) -> torch.Tensor:
    """A(h) for one adapter given as plain tensors in nn.Linear layout: ``down [r, d]``, ``up [d, r]``."""
    return functional.linear(quick_gelu(functional.linear(h, down_weight, down_bias)), up_weight, up_bias)


def batched_adapter_delta(
    h: torch.Tensor,
    down_weight: torch.Tensor,
    down_bias: torch.Tensor,
    up_weight: torch.Tensor,
    up_bias: torch.Tensor,
) -> torch.Tensor:
    """A_b(h_b) for every row b, each with its own adapter (weights already gathered per row, nn.Linear
    layout): ``h [B, N, d]``, ``down [B, r, d]``, ``down_bias [B, r]``, ``up [B, d, r]``, ``up_bias [B, d]``."""
    z = quick_gelu(torch.baddbmm(down_bias.unsqueeze(1), h, down_weight.transpose(1, 2)))
    return torch.baddbmm(up_bias.unsqueeze(1), z, up_weight.transpose(1, 2))
