"""Triton kernels that turn Q-Sparse top-K activations into fewer weight bytes read at decode.

A Q-Sparse projection is `y = TopK(x) @ W.T`: per token, keep the K largest-|x| inputs (signed
values kept) and drop the rest. At batch 1 decoding reads every weight once per token, so the
time is bytes over bandwidth; reading only the weight rows of the kept inputs cuts the bytes to
K/N of the dense ones. Two stages, both here:

1. **Selection pre-pass** (`select_topk`, and fused into `add_rmsnorm_select` and
   `act_mul_select`, which produce the projections' inputs): one program per token holds the
   row in registers and finds the K-th largest magnitude *exactly* by a bitwise binary search on
   the magnitude's bit pattern (for non-negative floats the bit pattern orders like the value):
   15 counting passes for bf16/fp16, 31 for fp32. Ties at the threshold are broken by lowest
   index, so exactly K inputs survive. Output: the row with the dropped inputs zeroed.
2. **Sparse GEMV** (`sparse_gemv`): the weight is stored transposed, `wt = W.T` of shape
   (in_features, out_features), so the weights of one input form one contiguous row. Each
   program owns a tile of outputs and a slice of inputs, loads the masked input block, and loads
   a weight row only when some token of the batch kept that input (masked loads fetch nothing
   for masked lanes). Partial sums are accumulated in fp32 and added to the fp32 output with
   atomics, so `out` must start zeroed. Batch 1 uses an elementwise fp32 accumulator, batches
   2..16 a tensor-core `tl.dot` on a 16-row tile; larger batches are split into chunks of 16.

`torch_ops.py` holds the plain-PyTorch twins of every function here (the reference for the
tests and the fallback without Triton). Ties: `torch.topk` breaks them in no documented order,
so a reference must break them the same way (lowest index) to match bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from leanstar.sparse.torch_ops import kept_features

MAX_TILE_ROWS = 16  # batch rows per GEMV launch (one tensor-core tile)


def _magnitude_bits(dtype: torch.dtype) -> int:
    if dtype in (torch.bfloat16, torch.float16):
        return 15
    if dtype == torch.float32:
        return 31
    raise TypeError(f"top-K selection supports bf16, fp16 and fp32, not {dtype}")


def _row_block(n: int) -> int:
    return triton.next_power_of_2(n)


_ROW_WARPS: dict[int, int] = {}  # row length -> warps measured best by `tune_select`


def _row_warps(n: int) -> int:
    return _ROW_WARPS.get(n) or (4 if n <= 2048 else 8 if n <= 8192 else 16)


# ---------------------------------------------------------------- selection


@triton.jit
def _topk_keep(x, valid, k, NBITS: tl.constexpr):
    """Mask of the `k` largest |x| among the `valid` lanes of a 1-D block; ties: lowest index."""
    if NBITS == 15:
        bits = x.to(tl.int16, bitcast=True).to(tl.int32) & 0x7FFF
    else:
        bits = x.to(tl.int32, bitcast=True) & 0x7FFFFFFF
    bits = tl.where(valid, bits, -1)
    # Largest t with count(bits >= t) >= k, one bit at a time from the top.
    t = tl.sum(bits * 0, axis=0)
    for b in tl.static_range(NBITS - 1, -1, -1):
        cand = t | (1 << b)
        count = tl.sum((bits >= cand).to(tl.int32), axis=0)
        t = tl.where(count >= k, cand, t)
    above = bits > t
    tied = bits == t
    room = k - tl.sum(above.to(tl.int32), axis=0)
    rank = tl.cumsum(tied.to(tl.int32), axis=0)
    return above | (tied & (rank <= room))


@triton.jit
def _select_kernel(
    x_ptr, y_ptr, n, k, stride_x, stride_y, BLOCK: tl.constexpr, NBITS: tl.constexpr
):
    row = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    valid = offs < n
    x = tl.load(x_ptr + row * stride_x + offs, mask=valid, other=0.0)
    keep = _topk_keep(x, valid, k, NBITS)
    tl.store(y_ptr + row * stride_y + offs, tl.where(keep, x, 0.0).to(x.dtype), mask=valid)


def select_topk(x: torch.Tensor, k: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """`x` (B, N) with all but each row's `k` largest-|x| entries zeroed (ties: lowest index)."""
    assert x.dim() == 2 and x.stride(1) == 1, "select_topk wants a row-major (B, N) tensor"
    out = torch.empty_like(x) if out is None else out
    n = x.shape[1]
    _select_kernel[(x.shape[0],)](
        x, out, n, k, x.stride(0), out.stride(0),
        BLOCK=_row_block(n), NBITS=_magnitude_bits(x.dtype), num_warps=_row_warps(n),
    )  # fmt: skip
    return out


@triton.jit
def _add_rmsnorm_select_kernel(
    h_ptr, d_ptr, w_ptr, y_ptr, n, k, eps, stride_h, stride_d, stride_y,
    HAS_DELTA: tl.constexpr, SELECT: tl.constexpr, BLOCK: tl.constexpr, NBITS: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    valid = offs < n
    h = tl.load(h_ptr + row * stride_h + offs, mask=valid, other=0.0)
    if HAS_DELTA:
        # The projection's output is rounded to the model dtype before the residual add, as in
        # the reference model, so both add the same numbers.
        d = tl.load(d_ptr + row * stride_d + offs, mask=valid, other=0.0).to(h.dtype)
        h = (h.to(tl.float32) + d.to(tl.float32)).to(h.dtype)
        tl.store(h_ptr + row * stride_h + offs, h, mask=valid)
    hf = h.to(tl.float32)
    var = tl.sum(hf * hf, axis=0) / n
    normed = (hf * tl.rsqrt(var + eps)).to(h.dtype)
    w = tl.load(w_ptr + offs, mask=valid, other=0.0)
    y = (w.to(tl.float32) * normed.to(tl.float32)).to(h.dtype)
    if SELECT:
        y = tl.where(_topk_keep(y, valid, k, NBITS), y, 0.0).to(h.dtype)
    tl.store(y_ptr + row * stride_y + offs, y, mask=valid)


def add_rmsnorm_select(
    h: torch.Tensor,
    delta: torch.Tensor | None,
    weight: torch.Tensor,
    eps: float,
    k: int | None,
    out: torch.Tensor,
) -> torch.Tensor:
    """`h += delta` (in place, rounded to h's dtype), then `out = TopK_k(RMSNorm(h) * weight)`.

    `delta` may be an fp32 accumulator or a tensor of h's dtype; `k=None` skips the selection.
    """
    n = h.shape[1]
    _add_rmsnorm_select_kernel[(h.shape[0],)](
        h, h if delta is None else delta, weight, out, n, k or 0, eps,
        h.stride(0), 0 if delta is None else delta.stride(0), out.stride(0),
        HAS_DELTA=delta is not None, SELECT=k is not None,
        BLOCK=_row_block(n), NBITS=_magnitude_bits(h.dtype), num_warps=_row_warps(n),
    )  # fmt: skip
    return out


@triton.jit
def _act_mul_select_kernel(
    gu_ptr, y_ptr, n, k, stride_gu, stride_y,
    RELU2: tl.constexpr, SELECT: tl.constexpr, BLOCK: tl.constexpr, NBITS: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    valid = offs < n
    dtype = y_ptr.dtype.element_ty
    g = tl.load(gu_ptr + row * stride_gu + offs, mask=valid, other=0.0).to(dtype).to(tl.float32)
    u = tl.load(gu_ptr + row * stride_gu + n + offs, mask=valid, other=0.0).to(dtype)
    if RELU2:
        r = tl.maximum(g, 0.0)
        a = (r * r).to(dtype)
    else:
        a = (g * tl.sigmoid(g)).to(dtype)
    y = (a.to(tl.float32) * u.to(tl.float32)).to(dtype)
    if SELECT:
        y = tl.where(_topk_keep(y, valid, k, NBITS), y, 0.0).to(dtype)
    tl.store(y_ptr + row * stride_y + offs, y, mask=valid)


def act_mul_select(
    gate_up: torch.Tensor, k: int | None, out: torch.Tensor, relu2: bool = False
) -> torch.Tensor:
    """`out = TopK_k(act(gate) * up)` for `gate_up = [gate | up]` (B, 2I); act is SiLU or
    squared ReLU; gate and up are rounded to out's dtype first, as a model computing them in
    that dtype would. `k=None` skips the selection."""
    n = out.shape[1]
    assert gate_up.shape[1] == 2 * n and gate_up.stride(1) == 1
    _act_mul_select_kernel[(out.shape[0],)](
        gate_up, out, n, k or 0, gate_up.stride(0), out.stride(0),
        RELU2=relu2, SELECT=k is not None,
        BLOCK=_row_block(n), NBITS=_magnitude_bits(out.dtype), num_warps=_row_warps(n),
    )  # fmt: skip
    return out


# ---------------------------------------------------------------- sparse GEMV


@dataclass(frozen=True)
class GemvConfig:
    """Tile of the sparse GEMV: BM outputs x BK inputs per step, `programs` ~ grid size."""

    bm: int = 128
    bk: int = 32
    programs: int = 528
    num_warps: int = 4
    num_stages: int = 3


@triton.jit
def _sparse_gemv_kernel(
    x_ptr, wt_ptr, out_ptr, B, N, M, k_iters, stride_x, stride_w, stride_o,
    BB: tl.constexpr, BM: tl.constexpr, BK: tl.constexpr, SKIP_ZERO: tl.constexpr,
    EVEN_M: tl.constexpr, IEEE: tl.constexpr,
):  # fmt: skip
    pid_m = tl.program_id(0)
    pid_k = tl.program_id(1)
    offs_m = pid_m * BM + tl.arange(0, BM)
    mask_m = offs_m < M
    k_start = pid_k * k_iters * BK
    if BB == 1:
        acc2 = tl.zeros([BK, BM], dtype=tl.float32)
    else:
        acc = tl.zeros([BB, BM], dtype=tl.float32)
        offs_b = tl.arange(0, BB)
    for i in range(k_iters):
        offs_k = k_start + i * BK + tl.arange(0, BK)
        mask_k = offs_k < N
        if BB == 1:
            x = tl.load(x_ptr + offs_k, mask=mask_k, other=0.0)
            if SKIP_ZERO:  # noqa: SIM108 (constexpr branches read best as statements here)
                rows = mask_k & (x != 0)
            else:
                rows = mask_k
        else:
            xmask = (offs_b < B)[:, None] & mask_k[None, :]
            x = tl.load(x_ptr + offs_b[:, None] * stride_x + offs_k[None, :], mask=xmask, other=0.0)
            if SKIP_ZERO:  # noqa: SIM108
                rows = mask_k & (tl.max((x != 0).to(tl.int32), axis=0) > 0)
            else:
                rows = mask_k
        w_ptrs = wt_ptr + offs_k[:, None].to(tl.int64) * stride_w + offs_m[None, :]
        if EVEN_M:
            w = tl.load(w_ptrs, mask=rows[:, None], other=0.0)
        else:
            w = tl.load(w_ptrs, mask=rows[:, None] & mask_m[None, :], other=0.0)
        if BB == 1:
            acc2 += x.to(tl.float32)[:, None] * w.to(tl.float32)
        else:
            if IEEE:
                acc = tl.dot(x.to(tl.float32), w.to(tl.float32), acc, input_precision="ieee")
            else:
                acc = tl.dot(x, w, acc)
    if BB == 1:
        tl.atomic_add(out_ptr + offs_m, tl.sum(acc2, axis=0), mask=mask_m)
    else:
        omask = (offs_b < B)[:, None] & mask_m[None, :]
        tl.atomic_add(out_ptr + offs_b[:, None] * stride_o + offs_m[None, :], acc, mask=omask)


# Triton 3.9's interpreter gets bf16 `tl.dot` wrong (values off by 1e10), so under the
# interpreter the batched GEMV multiplies in fp32; compiled GPU code uses the bf16 tensor cores.
INTERPRETED = type(_sparse_gemv_kernel).__name__ == "InterpretedFunction"

_TUNED: dict[tuple, GemvConfig] = {}


def gemv_config(rows: int, n: int, m: int, dtype: torch.dtype) -> GemvConfig:
    """The tuned tile for this shape if `tune_gemv` measured one, else a default."""
    tuned = _TUNED.get((_tile_rows(rows), n, m, dtype))
    if tuned is not None:
        return tuned
    return GemvConfig(bk=32 if rows == 1 else 64)


def set_gemv_config(rows: int, n: int, m: int, dtype: torch.dtype, cfg: GemvConfig) -> None:
    _TUNED[(_tile_rows(rows), n, m, dtype)] = cfg


def _tile_rows(rows: int) -> int:
    return 1 if rows == 1 else MAX_TILE_ROWS


def sparse_gemv(
    x: torch.Tensor,
    wt: torch.Tensor,
    out: torch.Tensor,
    skip_zero: bool = True,
    config: GemvConfig | None = None,
) -> torch.Tensor:
    """`out += x @ wt` in fp32, reading only the rows of `wt` (N, M) whose input is nonzero in
    some row of `x` (B, N). `out` (B, M) fp32 must hold zeros (or a sum to add to)."""
    b, n = x.shape
    m = wt.shape[1]
    assert wt.shape[0] == n and wt.stride(1) == 1 and x.stride(1) == 1, "shapes or layout"
    assert out.dtype == torch.float32 and out.shape == (b, m) and out.stride(1) == 1
    for start in range(0, b, MAX_TILE_ROWS):
        stop = min(b, start + MAX_TILE_ROWS)
        _launch_gemv(x[start:stop], wt, out[start:stop], skip_zero, config)
    return out


def _launch_gemv(x, wt, out, skip_zero, config):
    rows, n = x.shape
    m = wt.shape[1]
    cfg = config or gemv_config(rows, n, m, x.dtype)
    bb = _tile_rows(rows)
    grid_m = triton.cdiv(m, cfg.bm)
    k_blocks = triton.cdiv(n, cfg.bk)
    splits = max(1, min(k_blocks, cfg.programs // grid_m))
    k_iters = triton.cdiv(k_blocks, splits)
    splits = triton.cdiv(k_blocks, k_iters)
    _sparse_gemv_kernel[(grid_m, splits)](
        x, wt, out, rows, n, m, k_iters, x.stride(0), wt.stride(0), out.stride(0),
        BB=bb, BM=cfg.bm, BK=cfg.bk, SKIP_ZERO=skip_zero, EVEN_M=m % cfg.bm == 0,
        IEEE=x.dtype == torch.float32 or INTERPRETED, num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )  # fmt: skip


def sparse_linear(
    x: torch.Tensor, wt: torch.Tensor, k: int, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """`TopK_k(x) @ wt (+ bias)` in fp32: selection pre-pass, then the sparse GEMV."""
    out = torch.zeros(x.shape[0], wt.shape[1], device=x.device, dtype=torch.float32)
    if bias is not None:
        out += bias.float()
    return sparse_gemv(select_topk(x, k), wt, out)


# ---------------------------------------------------------------- tuning (GPU only)


def graph_time_us(fn, calls: int = 20) -> float:
    """Median GPU time of `fn(i)` in us: `calls` calls captured in one CUDA graph, replayed under
    triton's do_bench, so host launch overhead stays out (as in a graph-replayed decode step)."""
    from triton.testing import do_bench

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for i in range(2):
            fn(i)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for i in range(calls):
            fn(i)
    ms = do_bench(graph.replay, warmup=5, rep=25, return_mode="median")
    return 1e3 * ms / calls


CANDIDATES = (
    GemvConfig(bm=128, bk=32, programs=528, num_warps=4),
    GemvConfig(bm=128, bk=32, programs=1056, num_warps=4),
    GemvConfig(bm=128, bk=64, programs=1056, num_warps=4),
    GemvConfig(bm=64, bk=64, programs=1056, num_warps=4),
    GemvConfig(bm=64, bk=32, programs=2112, num_warps=2),
    GemvConfig(bm=256, bk=32, programs=528, num_warps=8),
)


def tune_gemv(
    rows: int, n: int, m: int, dtype: torch.dtype, density: float = 0.5, l2_bytes: int = 2**27
) -> tuple[GemvConfig, float]:
    """Time each candidate tile on this GPU (random inputs at `density`, weight copies rotated
    past the L2 cache) and remember the fastest for this shape; returns it and its median us
    (us = nan when this shape was tuned before and the remembered tile is returned)."""
    known = _TUNED.get((_tile_rows(rows), n, m, dtype))
    if known is not None:
        return known, float("nan")
    dev = torch.device("cuda")
    copies = max(1, min(16, math.ceil(l2_bytes / (n * m * dtype.itemsize))))
    wts = [torch.randn(n, m, device=dev, dtype=dtype) / math.sqrt(n) for _ in range(copies)]
    x = select_topk(torch.randn(rows, n, device=dev, dtype=dtype), kept_features(density, n))
    out = torch.empty(rows, m, device=dev, dtype=torch.float32)
    best, best_us = CANDIDATES[0], float("inf")
    for cfg in CANDIDATES:
        us = graph_time_us(lambda i, cfg=cfg: sparse_gemv(x, wts[i % copies], out, config=cfg))
        if us < best_us:
            best, best_us = cfg, us
    set_gemv_config(rows, n, m, dtype, best)
    return best, best_us


def tune_select(n: int, dtype: torch.dtype, rows: int = 1) -> tuple[int, dict[int, float]]:
    """Time the selection pre-pass for rows of `n` at several warp counts; remember the best
    for the fused selection kernels too. Returns (best warps, {warps: median us})."""
    x = torch.randn(rows, n, device="cuda", dtype=dtype)
    y = torch.empty_like(x)
    k = kept_features(0.5, n)
    times = {}
    for warps in (4, 8, 16) if n > 2048 else (2, 4, 8):
        _ROW_WARPS[n] = warps
        times[warps] = graph_time_us(lambda i: select_topk(x, k, y))
    best = min(times, key=times.get)
    _ROW_WARPS[n] = best
    return best, times
