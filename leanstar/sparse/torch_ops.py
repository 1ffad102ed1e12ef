"""Plain-PyTorch twins of the decode kernels in `kernels.py` and `attention_kernels.py`.

Same names, signatures and rounding steps, so a decode step runs on either set. They are the
reference the Triton kernels are tested against, and the path the compiled decoder takes where
Triton cannot run (a CPU without `TRITON_INTERPRET=1`). They compute what the kernels compute,
not how: the sparse GEMV here multiplies the whole zero-padded input.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from leanstar.sparse.topk import keep_count, topk_mask


def kept_features(keep_ratio: float, n: int) -> int:
    """How many of `n` inputs a projection keeps (Q-Sparse's `keep_count`)."""
    return keep_count(n, keep_ratio)


def select_topk(x, k: int, out=None, state=None, compact=None, plan=None) -> torch.Tensor:
    """`state` (a warm start for the kernel's search) and `plan` (how the kernel runs) change
    nothing here and are ignored."""
    keep = topk_mask(x, k)
    y = torch.where(keep, x, torch.zeros_like(x))
    if compact is not None:
        idx, val = compact
        # exactly k per row, in index order; a stable sort, not nonzero(), which would make the
        # host wait for the GPU (no CUDA graph can capture that)
        cols = keep.to(torch.int8).sort(dim=1, descending=True, stable=True).indices[:, :k]
        idx[:, :k] = cols.to(idx.dtype)
        val[:, :k] = x.gather(1, cols)
    return y if out is None else out.copy_(y)


def sparse_gemv(x, wt, out, skip_zero: bool = True, config=None, compact=None) -> torch.Tensor:
    return out.add_(x.float() @ wt.float())


def rmsnorm(h: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Qwen2's RMSNorm: normalise in fp32, round, then scale by the weight in h's dtype."""
    hf = h.float()
    normed = (hf * torch.rsqrt(hf.pow(2).mean(-1, keepdim=True) + eps)).to(h.dtype)
    return weight * normed


def add_rmsnorm_select(
    h, delta, weight, eps: float, k: int | None, out, state=None, compact=None, plan=None
) -> torch.Tensor:
    if delta is not None:
        h.copy_(h + delta.to(h.dtype))
    y = rmsnorm(h, weight, eps)
    return out.copy_(y if k is None else select_topk(y, k, compact=compact))


def activation(gate: torch.Tensor, relu2: bool) -> torch.Tensor:
    return torch.relu(gate).square() if relu2 else F.silu(gate)


def act_mul_select(
    gate_up, k: int | None, out, relu2: bool = False, state=None, compact=None, plan=None
) -> torch.Tensor:
    n = out.shape[1]
    gate, up = gate_up[:, :n].to(out.dtype), gate_up[:, n:].to(out.dtype)
    y = activation(gate, relu2) * up
    return out.copy_(y if k is None else select_topk(y, k, compact=compact))


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding in Qwen2's rotate-half layout (x: (..., D), cos/sin: (..., D/2)),
    rounding each product and the sum to x's dtype as transformers does."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    c, s = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1)


def rope_qkv_cache(qkv, bias, cos, sin, pos, q_out, k_cache, v_cache) -> None:
    b, hq, d = q_out.shape
    hkv = k_cache.shape[1]
    x = qkv.float() + (bias.float() if bias is not None else 0.0)
    x = x.to(q_out.dtype).view(b, hq + 2 * hkv, d)
    c, s = cos[pos.long()][:, None], sin[pos.long()][:, None]
    q_out.copy_(rotate(x[:, :hq], c, s))
    rows = torch.arange(b, device=qkv.device)
    k_cache[rows, :, pos.long()] = rotate(x[:, hq : hq + hkv], c, s)
    v_cache[rows, :, pos.long()] = x[:, hq + hkv :]


def decode_attention(q, k_cache, v_cache, pos, out) -> torch.Tensor:
    """Row r attends to its cache positions 0..pos[r]. The whole cache is read and the rest
    masked out, so that the host never waits on `pos` and a CUDA graph can capture the step."""
    b, hq, d = q.shape
    hkv, seq = k_cache.shape[1], k_cache.shape[2]
    qg = q.float().view(b, hkv, hq // hkv, d)  # query heads grouped by the kv head they share
    k, v = k_cache[:b].float(), v_cache[:b].float()  # (b, hkv, seq, d)
    scores = qg @ k.transpose(2, 3) / math.sqrt(d)  # (b, hkv, group, seq)
    live = torch.arange(seq, device=q.device) <= pos[:b, None].long()  # (b, seq)
    scores = scores.masked_fill(~live[:, None, None, :], float("-inf"))
    o = torch.softmax(scores, dim=-1) @ v  # (b, hkv, group, d)
    out[:b] = o.reshape(b, hq * d).to(out.dtype)
    return out
