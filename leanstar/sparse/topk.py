"""Top-K activation sparsification with the straight-through estimator (Q-Sparse).

Per token, along the last (feature) dimension, keep the K entries of largest magnitude with
their signs and zero the rest. The forward pass sees the masked tensor; the backward pass hands
the incoming gradient through unchanged (straight-through estimator), so ``d loss / d x`` is
the gradient the loss has with respect to the masked input, at every position, kept or not.
Without it the gradient of a dropped entry would be zero and, per the paper, gradients vanish
in the bottom layers.

Exactly K entries are kept per token, also when magnitudes tie: the kept positions are the
indices `torch.topk` returns, never a `|x| >= threshold` test. The N:M variant keeps the N
largest of each block of M consecutive features (e.g. 16 of each 32).

All functions take any leading shape and any floating dtype (fp32, bf16, fp16), on any device.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "keep_count",
    "nm_mask",
    "nm_ste",
    "topk_indices",
    "topk_mask",
    "topk_ste",
]


def keep_count(dim: int, keep_ratio: float) -> int:
    """K for a feature dimension: `floor(keep_ratio * dim)`, at least 1, at most `dim`.

    The released Q-Sparse code keeps `int((1 - sparse_ratio) * dim)`; the small epsilon guards
    against float products such as `0.29 * 100 = 28.999999999999996`.
    """
    if not 0.0 < keep_ratio <= 1.0:
        raise ValueError(f"keep_ratio must be in (0, 1], got {keep_ratio}")
    return min(dim, max(1, math.floor(keep_ratio * dim + 1e-6)))


def topk_indices(x: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (along the last dim) of the `k` largest-magnitude entries of each token."""
    return torch.topk(x.abs(), k, dim=-1, sorted=False).indices


def topk_mask(x: torch.Tensor, k: int) -> torch.Tensor:
    """A boolean mask with exactly `k` True entries per token: the largest magnitudes of `x`."""
    _check_k(x, k)
    mask = torch.zeros(x.shape, dtype=torch.bool, device=x.device)
    return mask.scatter_(-1, topk_indices(x, k), True)


def nm_mask(x: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """A boolean mask keeping the `n` largest magnitudes in each block of `m` features."""
    dim = x.shape[-1]
    if not 0 < n <= m:
        raise ValueError(f"N:M sparsity needs 0 < N <= M, got {n}:{m}")
    if dim % m:
        raise ValueError(f"N:M sparsity with M={m} needs a feature dim divisible by M, got {dim}")
    blocks = x.reshape(*x.shape[:-1], dim // m, m)
    return topk_mask(blocks, n).reshape(x.shape)


class _MaskSTE(torch.autograd.Function):
    """Forward: `x` with everything outside `keep` zeroed. Backward: the gradient unchanged.

    Saves nothing for backward, so it costs no activation memory beyond the output.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        return x.masked_fill(~keep, 0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


class _TopKSTE(torch.autograd.Function):
    """Forward: exact top-K by magnitude per token. Backward: the gradient unchanged."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, k: int) -> torch.Tensor:
        idx = topk_indices(x, k)
        return torch.zeros_like(x).scatter_(-1, idx, x.gather(-1, idx))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


def topk_ste(x: torch.Tensor, k: int) -> torch.Tensor:
    """`x` with all but its `k` largest-magnitude entries per token zeroed; STE backward."""
    _check_k(x, k)
    if k == x.shape[-1]:
        return x
    return _TopKSTE.apply(x, k)


def nm_ste(x: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """`x` with the `n` largest magnitudes kept in each block of `m` features; STE backward."""
    if n == m and x.shape[-1] % m == 0:
        return x
    return _MaskSTE.apply(x, nm_mask(x, n, m))


def _check_k(x: torch.Tensor, k: int) -> None:
    if x.dim() == 0:
        raise ValueError("top-K needs a tensor with a feature dimension, got a scalar")
    if not 1 <= k <= x.shape[-1]:
        raise ValueError(f"top-K needs 1 <= K <= {x.shape[-1]} (the feature dim), got K={k}")
