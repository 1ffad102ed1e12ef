"""Triton kernels for the attention half of a decode step: rotary + KV-cache write, and
split-KV ("flash-decoding") attention over a static cache.

Layouts: the fused projection output `qkv` is (B, (Hq + 2 Hkv) * D) with q heads, then k heads,
then v heads; the caches are (B, Hkv, S, D); `pos[b]` is the position of row b's current token,
whose k and v are written at `pos[b]` and which attends to positions 0..pos[b]. Every row has
its own position, so prompts of different lengths decode together, and nothing depends on the
host: one CUDA graph serves every step.

`torch_ops.py` holds the plain-PyTorch twins (the test reference and the CPU fallback).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

# Triton 3.9's interpreter computes bf16 `tl.dot` wrongly, so there the dots run in fp32.
from leanstar.sparse.kernels import INTERPRETED

BLOCK_S = 32  # cache positions per attention step


@triton.jit
def _rope_cache_kernel(
    qkv_ptr, bias_ptr, cos_ptr, sin_ptr, pos_ptr, q_ptr, kc_ptr, vc_ptr,
    stride_qkv, stride_qb, stride_qh, stride_cb, stride_ch, stride_cs,
    HQ: tl.constexpr, HKV: tl.constexpr, HALF: tl.constexpr, HAS_BIAS: tl.constexpr,
):  # fmt: skip
    b = tl.program_id(0)
    h = tl.program_id(1)
    dtype = q_ptr.dtype.element_ty
    i = tl.arange(0, HALF)
    col = h * (2 * HALF) + i
    x1 = tl.load(qkv_ptr + b * stride_qkv + col).to(tl.float32)
    x2 = tl.load(qkv_ptr + b * stride_qkv + col + HALF).to(tl.float32)
    if HAS_BIAS:
        x1 += tl.load(bias_ptr + col).to(tl.float32)
        x2 += tl.load(bias_ptr + col + HALF).to(tl.float32)
    # Round to the model dtype where a model computing in it would hold the projection output.
    x1 = x1.to(dtype).to(tl.float32)
    x2 = x2.to(dtype).to(tl.float32)
    pos = tl.load(pos_ptr + b)
    if h < HQ + HKV:
        c = tl.load(cos_ptr + pos * HALF + i)
        s = tl.load(sin_ptr + pos * HALF + i)
        # Each product and the sum rounded to the model dtype, as transformers computes it.
        x1c = (x1 * c).to(dtype).to(tl.float32)
        x2s = (x2 * s).to(dtype).to(tl.float32)
        x2c = (x2 * c).to(dtype).to(tl.float32)
        x1s = (x1 * s).to(dtype).to(tl.float32)
        x1, x2 = x1c - x2s, x2c + x1s
    if h < HQ:
        dst = q_ptr + b * stride_qb + h * stride_qh + i
    elif h < HQ + HKV:
        dst = kc_ptr + b * stride_cb + (h - HQ) * stride_ch + pos * stride_cs + i
    else:
        dst = vc_ptr + b * stride_cb + (h - HQ - HKV) * stride_ch + pos * stride_cs + i
    tl.store(dst, x1.to(dtype))
    tl.store(dst + HALF, x2.to(dtype))


def rope_qkv_cache(
    qkv: torch.Tensor,
    bias: torch.Tensor | None,
    cos: torch.Tensor,
    sin: torch.Tensor,
    pos: torch.Tensor,
    q_out: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
) -> None:
    """Add `bias`, rotate q and k by `pos` (tables `cos`, `sin`: (S, D/2) fp32), write q to
    `q_out` (B, Hq, D) and k, v into the caches (B, Hkv, S, D) at `pos`."""
    b, hq, d = q_out.shape
    hkv = k_cache.shape[1]
    assert qkv.shape == (b, (hq + 2 * hkv) * d) and qkv.stride(1) == 1
    assert k_cache.stride() == v_cache.stride() and k_cache.stride(3) == 1
    _rope_cache_kernel[(b, hq + 2 * hkv)](
        qkv, qkv if bias is None else bias, cos, sin, pos, q_out, k_cache, v_cache,
        qkv.stride(0), q_out.stride(0), q_out.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        HQ=hq, HKV=hkv, HALF=d // 2, HAS_BIAS=bias is not None, num_warps=1,
    )  # fmt: skip


@triton.jit
def _attn_split_kernel(
    q_ptr, kc_ptr, vc_ptr, pos_ptr, m_ptr, l_ptr, acc_ptr, scale, chunk,
    stride_qb, stride_qh, stride_cb, stride_ch, stride_cs,
    HQ: tl.constexpr, GROUP: tl.constexpr, GP: tl.constexpr, D: tl.constexpr,
    BS: tl.constexpr, NSPLIT: tl.constexpr, FP32_DOT: tl.constexpr,
):  # fmt: skip
    b = tl.program_id(0)
    hk = tl.program_id(1)
    sp = tl.program_id(2)
    length = tl.load(pos_ptr + b) + 1
    start = sp * chunk
    end = tl.minimum(start + chunk, length)
    g = tl.arange(0, GP)
    d = tl.arange(0, D)
    heads = hk * GROUP + g
    live = g < GROUP
    q = tl.load(
        q_ptr + b * stride_qb + heads[:, None] * stride_qh + d[None, :],
        mask=live[:, None],
        other=0.0,
    )
    if FP32_DOT:
        q = q.to(tl.float32)
    m_i = tl.full([GP], float("-inf"), tl.float32)
    l_i = tl.zeros([GP], tl.float32)
    acc = tl.zeros([GP, D], tl.float32)
    base = b * stride_cb + hk * stride_ch
    for s0 in range(start, end, BS):
        s = s0 + tl.arange(0, BS)
        ok = s < end
        offs = base + s[:, None] * stride_cs + d[None, :]
        k = tl.load(kc_ptr + offs, mask=ok[:, None], other=0.0)
        v = tl.load(vc_ptr + offs, mask=ok[:, None], other=0.0)
        if FP32_DOT:
            k = k.to(tl.float32)
            v = v.to(tl.float32)
        if FP32_DOT:
            scores = tl.dot(q, tl.trans(k), input_precision="ieee") * scale
        else:
            scores = tl.dot(q, tl.trans(k)) * scale
        scores = tl.where(ok[None, :], scores, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(scores, axis=1))
        p = tl.exp(scores - m_new[:, None])
        alpha = tl.exp(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, axis=1)
        if FP32_DOT:
            acc = acc * alpha[:, None] + tl.dot(p, v, input_precision="ieee")
        else:
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m_i = m_new
    row = (b * HQ + heads) * NSPLIT + sp
    tl.store(m_ptr + row, m_i, mask=live)
    tl.store(l_ptr + row, l_i, mask=live)
    tl.store(acc_ptr + row[:, None] * D + d[None, :], acc, mask=live[:, None])


@triton.jit
def _attn_combine_kernel(
    m_ptr, l_ptr, acc_ptr, out_ptr, stride_ob, HQ: tl.constexpr, D: tl.constexpr,
    NSPLIT: tl.constexpr,
):  # fmt: skip
    b = tl.program_id(0)
    h = tl.program_id(1)
    sp = tl.arange(0, NSPLIT)
    d = tl.arange(0, D)
    row = (b * HQ + h) * NSPLIT + sp
    m = tl.load(m_ptr + row)
    weight = tl.exp(m - tl.max(m, axis=0))  # splits past the sequence hold -inf: weight 0
    total = tl.sum(weight * tl.load(l_ptr + row), axis=0)
    acc = tl.load(acc_ptr + row[:, None] * D + d[None, :])
    o = tl.sum(weight[:, None] * acc, axis=0) / total
    tl.store(out_ptr + b * stride_ob + h * D + d, o.to(out_ptr.dtype.element_ty))


def attention_splits(max_seq: int) -> tuple[int, int]:
    """(number of splits, positions per split) for a cache of `max_seq` positions."""
    nsplit = min(64, triton.next_power_of_2(triton.cdiv(max_seq, 64)))
    chunk = triton.cdiv(triton.cdiv(max_seq, nsplit), BLOCK_S) * BLOCK_S
    return nsplit, chunk


def decode_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    pos: torch.Tensor,
    out: torch.Tensor,
) -> torch.Tensor:
    """Causal attention of each row's one query (B, Hq, D) over its cache positions 0..pos[b];
    writes (B, Hq * D) into `out`. Grouped-query: Hq / Hkv query heads share a kv head."""
    b, hq, d = q.shape
    hkv, s_max = k_cache.shape[1], k_cache.shape[2]
    group = hq // hkv
    assert d == triton.next_power_of_2(d) and hq == group * hkv, "head_dim must be a power of 2"
    nsplit, chunk = attention_splits(s_max)
    m = torch.empty(b, hq, nsplit, device=q.device, dtype=torch.float32)
    l_ = torch.empty_like(m)
    acc = torch.empty(b, hq, nsplit, d, device=q.device, dtype=torch.float32)
    _attn_split_kernel[(b, hkv, nsplit)](
        q, k_cache, v_cache, pos, m, l_, acc, 1.0 / math.sqrt(d), chunk,
        q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        HQ=hq, GROUP=group, GP=max(16, triton.next_power_of_2(group)), D=d, BS=BLOCK_S,
        NSPLIT=nsplit, FP32_DOT=INTERPRETED or q.dtype == torch.float32, num_warps=4,
    )  # fmt: skip
    _attn_combine_kernel[(b, hq)](m, l_, acc, out, out.stride(0), HQ=hq, D=d, NSPLIT=nsplit)
    return out
