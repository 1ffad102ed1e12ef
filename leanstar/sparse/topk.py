"""Top-K activation sparsification with the straight-through estimator (Q-Sparse).

Per token, along the last (feature) dimension, keep the K entries of largest magnitude with
their signs and zero the rest. The forward pass sees the masked tensor; the backward pass hands
the incoming gradient through unchanged (straight-through estimator), so ``d loss / d x`` is
the gradient the loss has with respect to the masked input, at every position, kept or not.
Without it the gradient of a dropped entry would be zero and, per the paper, gradients vanish
in the bottom layers.

Exactly K entries are kept per token, also when magnitudes tie: entries above the K-th
largest magnitude are kept, and ties *at* it are broken toward the lowest feature index. The
rule is deterministic and the same on every device, so CPU, GPU and the decode kernels
(`leanstar.sparse.kernels.select_topk`, which breaks ties the same way) agree bit for bit.
The N:M variant keeps the N largest of each block of M consecutive features (e.g. 16 of 32).

Two backends compute the same top-K: plain PyTorch (any device), and on a CUDA GPU with Triton
installed the decode kernels' one-pass selection (`backend="auto"` picks it there; `torch.topk`
followed by masking costs several times the matmul it feeds on an H100, see docs/qsparse.md).

All functions take any leading shape and any floating dtype (fp32, bf16, fp16), on any device.
"""

from __future__ import annotations

import importlib.util
import math
from typing import Literal

import torch

__all__ = [
    "keep_count",
    "nm_mask",
    "nm_ste",
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


Backend = Literal["auto", "torch", "triton"]
TRITON_MAX_DIM = 32767  # the selection kernel's row limit
_TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def topk_mask(x: torch.Tensor, k: int) -> torch.Tensor:
    """A boolean mask with exactly `k` True entries per token: the largest magnitudes of `x`,
    ties at the K-th largest broken toward the lowest index."""
    _check_k(x, k)
    mag = x.abs()
    threshold = torch.topk(mag, k, dim=-1, sorted=False).values.amin(-1, keepdim=True)
    if _capturing(x):
        # Asking which rows have ties makes the host wait for the GPU, which a CUDA graph
        # capture forbids: every row takes the tie-breaking path then (the same mask).
        return _keep_breaking_ties(mag, threshold, k)
    keep = mag >= threshold
    crowded = keep.sum(-1) != k  # rows with more ties at the threshold than places left
    if crowded.any():  # rare; tie-breaking every row costs ~1.5x on a CPU
        keep[crowded] = _keep_breaking_ties(mag[crowded], threshold[crowded], k)
    return keep


def _capturing(x: torch.Tensor) -> bool:
    """Whether `x`'s GPU stream is being captured into a CUDA graph."""
    return x.is_cuda and torch.cuda.is_current_stream_capturing()


def _keep_breaking_ties(mag: torch.Tensor, threshold: torch.Tensor, k: int) -> torch.Tensor:
    above, tied = mag > threshold, mag == threshold
    room = k - above.sum(-1, keepdim=True)  # >= 1: fewer than k entries exceed the K-th
    return above | (tied & (tied.cumsum(-1) <= room))


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
    def forward(ctx, x: torch.Tensor, k: int, use_triton: bool) -> torch.Tensor:
        if use_triton:
            return _triton_topk(x, k)
        return x.masked_fill(~topk_mask(x, k), 0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return grad, None, None


def topk_ste(x: torch.Tensor, k: int, backend: Backend = "auto") -> torch.Tensor:
    """`x` with all but its `k` largest-magnitude entries per token zeroed; STE backward.

    `backend`: "auto" (the Triton selection on a CUDA tensor when Triton is installed and the
    dtype / width allow it, else PyTorch), "torch", or "triton" (an error where it cannot run;
    on a CPU it needs `TRITON_INTERPRET=1`). All give the same result.
    """
    _check_k(x, k)
    if k == x.shape[-1]:
        return x
    return _TopKSTE.apply(x, k, _use_triton(x, backend))


def _use_triton(x: torch.Tensor, backend: Backend) -> bool:
    if backend == "torch":
        return False
    fits = x.dtype in _TRITON_DTYPES and x.shape[-1] <= TRITON_MAX_DIM and x.numel() > 0
    available = importlib.util.find_spec("triton") is not None
    if backend == "triton":
        if not (fits and available):
            raise ValueError(
                f"the Triton top-K needs triton installed, a {_TRITON_DTYPES} tensor and a "
                f"feature dim <= {TRITON_MAX_DIM}; got {x.dtype}, dim {x.shape[-1]}"
            )
        return True
    if backend != "auto":
        raise ValueError(f"backend must be auto, torch or triton, got {backend!r}")
    return fits and available and x.is_cuda


def _triton_topk(x: torch.Tensor, k: int) -> torch.Tensor:
    from leanstar.sparse.kernels import select_topk

    rows = x.reshape(-1, x.shape[-1]).contiguous()
    return select_topk(rows, k).view(x.shape)


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
