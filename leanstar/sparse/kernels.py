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
from dataclasses import dataclass, replace

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


def _row_warps(n: int) -> int:
    """Warps of a one-program-per-row kernel (measured best on an H100 for the bitwise search:
    bench/RESULTS.md)."""
    return 4 if n <= 2048 else 8 if n <= 8192 else 16


# ---------------------------------------------------------------- selection


@triton.jit
def _magnitude(x, valid, NBITS: tl.constexpr):
    """|x| as an integer that orders like the value (-1 on invalid lanes)."""
    if NBITS == 15:
        bits = x.to(tl.int16, bitcast=True).to(tl.int32) & 0x7FFF
    else:
        bits = x.to(tl.int32, bitcast=True) & 0x7FFFFFFF
    return tl.where(valid, bits, -1)


@triton.jit
def _search(bits, k, t, NBITS: tl.constexpr):
    """Largest t' in [t, t + 2^NBITS) with count(bits >= t') >= k (given count(bits >= t) >= k),
    one bit at a time from the top: NBITS counting passes."""
    for b in tl.static_range(NBITS - 1, -1, -1):
        cand = t + (1 << b)
        count = tl.sum((bits >= cand).to(tl.int32), axis=0)
        t = tl.where(count >= k, cand, t)
    return t


@triton.jit
def _warm_search(bits, k, t0, NBITS: tl.constexpr, WIDTH_BITS: tl.constexpr):
    """The same threshold, started from `t0` (the previous call's, for the same site): one
    pass counts 4 edges around t0 at once (16-bit fields of an int64 sum); when the threshold
    lies between them, WIDTH_BITS passes finish the search, else the full NBITS-pass search."""
    e1 = t0 - 3 * (1 << (WIDTH_BITS - 1))
    e2 = t0 - (1 << (WIDTH_BITS - 1))
    e3 = t0 + (1 << (WIDTH_BITS - 1))
    e4 = t0 + 3 * (1 << (WIDTH_BITS - 1))
    packed = (
        (bits >= e1).to(tl.int64)
        + ((bits >= e2).to(tl.int64) << 16)
        + ((bits >= e3).to(tl.int64) << 32)
        + ((bits >= e4).to(tl.int64) << 48)
    )
    total = tl.sum(packed, axis=0)
    c1 = (total & 0xFFFF).to(tl.int32)
    c2 = ((total >> 16) & 0xFFFF).to(tl.int32)
    c3 = ((total >> 32) & 0xFFFF).to(tl.int32)
    c4 = ((total >> 48) & 0xFFFF).to(tl.int32)
    lo = tl.where(c3 >= k, e3, tl.where(c2 >= k, e2, e1))
    if (e1 >= 0) & (c1 >= k) & (c4 < k):
        t = _search(bits, k, lo, WIDTH_BITS)
    else:
        t = _search(bits, k, lo * 0, NBITS)
    return t


@triton.jit
def _digit_pick(h, k, above, NB: tl.constexpr):
    """One radix digit of the K-th largest: `h` counts, per digit value, the entries whose higher
    digits equal the threshold's; `above` entries are known to be larger. Returns the digit
    (the largest b with above + count(digit >= b) >= k) and the new count of larger entries."""
    bins = tl.arange(0, NB)
    at_least = tl.sum(h, axis=0) - tl.cumsum(h, axis=0) + h
    b = tl.max(tl.where(above + at_least >= k, bins, 0), axis=0)
    return b, above + tl.sum(tl.where(bins > b, h, 0), axis=0)


@triton.jit
def _radix_search(bits, valid, k, NBITS: tl.constexpr):
    """The K-th largest of `bits` by radix select: one histogram per 8-bit digit from the top
    (256 bins; the last digit has NBITS % 8 = 7 bits), each over the entries whose higher
    digits match the threshold found so far: 2 passes for bf16/fp16, 4 for fp32."""
    zero = tl.sum(bits * 0, axis=0)
    t = zero
    above = zero
    for i in tl.static_range(NBITS // 8):
        shift = NBITS - 8 * (i + 1)
        match = valid & ((bits >> (shift + 8)) == (t >> (shift + 8)))
        h = tl.histogram((bits >> shift) & 255, 256, mask=match)
        b, above = _digit_pick(h, k, above, 256)
        t = t | (b << shift)
    match = valid & ((bits >> 7) == (t >> 7))
    h = tl.histogram(bits & 127, 128, mask=match)
    b, above = _digit_pick(h, k, above, 128)
    return t | b


@triton.jit
def _select(
    y, valid, offs, k, row, y_ptr, stride_y, state_ptr, idx_ptr, val_ptr, stride_c,
    NBITS: tl.constexpr, WARM: tl.constexpr, COMPACT: tl.constexpr, RADIX: tl.constexpr,
):  # fmt: skip
    """Keep the `k` largest |y| of the row (ties: lowest index), store the masked row, and, if
    COMPACT, the kept indices and values in index order. RADIX: find the threshold by radix
    select (histograms); else by the bitwise search, which, if WARM, starts from (and updates)
    the row's threshold in `state_ptr`."""
    bits = _magnitude(y, valid, NBITS)
    if RADIX:
        t = _radix_search(bits, valid, k, NBITS)
    elif WARM:
        t0 = tl.load(state_ptr + row)
        t = _warm_search(bits, k, t0, NBITS, 5 + NBITS - 15)
        tl.store(state_ptr + row, t)
    else:
        t = _search(bits, k, tl.sum(bits * 0, axis=0), NBITS)
    above = bits > t
    tied = bits == t
    room = k - tl.sum(above.to(tl.int32), axis=0)
    # One scan counts both: kept entries before i = above ones + the first `room` tied ones.
    scan = tl.cumsum(above.to(tl.int32) + (tied.to(tl.int32) << 16), axis=0)
    n_tied = scan >> 16
    keep = above | (tied & (n_tied <= room))
    tl.store(y_ptr + row * stride_y + offs, tl.where(keep, y, 0.0).to(y.dtype), mask=valid)
    if COMPACT:
        pos = (scan & 0xFFFF) + tl.minimum(n_tied, room) - 1
        tl.store(idx_ptr + row * stride_c + pos, offs, mask=keep)
        tl.store(val_ptr + row * stride_c + pos, y, mask=keep)


@triton.jit
def _select_kernel(
    x_ptr, y_ptr, n, k, stride_x, stride_y, state_ptr, idx_ptr, val_ptr, stride_c,
    BLOCK: tl.constexpr, NBITS: tl.constexpr, WARM: tl.constexpr, COMPACT: tl.constexpr,
    RADIX: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    valid = offs < n
    x = tl.load(x_ptr + row * stride_x + offs, mask=valid, other=0.0)
    _select(
        x, valid, offs, k, row, y_ptr, stride_y, state_ptr, idx_ptr, val_ptr, stride_c,
        NBITS, WARM, COMPACT, RADIX,
    )  # fmt: skip


# ---------------------------------------------------------------- selection plans


@dataclass(frozen=True)
class SelectPlan:
    """How one selection site runs. "search": one program per row, bitwise search (warm-started
    when the caller passes a state); "radix": one program per row, radix select (2 histogram
    passes for 16-bit types); "multi": `chunk`-wide slices of each row on separate programs,
    three launches (hi-digit histograms -> lo-digit histograms -> mask; 16-bit types only)."""

    method: str = "search"
    num_warps: int = 0  # 0: by row length (one-program methods) / 4 (multi)
    chunk: int = 1024

    def warps(self, n: int) -> int:
        return self.num_warps or (_row_warps(n) if self.method != "multi" else 4)


KINDS = ("select", "add_rmsnorm", "act_mul")  # the op a selection is fused into
# Tuned plans and their measured us, per site: (kind, tile rows, width, dtype, compacts).
_PLANS: dict[tuple, SelectPlan] = {}
_PLAN_US: dict[tuple, float] = {}


def _site_key(kind: str, rows: int, n: int, dtype: torch.dtype, compact: bool) -> tuple:
    return kind, _tile_rows(rows), n, dtype, bool(compact)


def select_plan(
    kind: str,
    rows: int,
    n: int,
    dtype: torch.dtype,
    plan: SelectPlan | None = None,
    compact: bool = False,
) -> SelectPlan:
    """`plan` if given, else the one `tune_select_site` measured best for this site (`compact`:
    whether the call also writes the compacted list), else the bitwise search (also for a
    multi-program plan on fp32 rows, which it does not handle)."""
    plan = plan or _PLANS.get(_site_key(kind, rows, n, dtype, compact))
    if plan is None or (plan.method == "multi" and _magnitude_bits(dtype) != 15):
        return SelectPlan()
    return plan


def set_select_plan(
    kind: str, rows: int, n: int, dtype: torch.dtype, plan: SelectPlan, compact: bool = False
) -> None:
    assert kind in KINDS and plan.method in ("search", "radix", "multi"), plan
    _PLANS[_site_key(kind, rows, n, dtype, compact)] = plan


def _selection_args(like: torch.Tensor, k: int, state, compact, plan: SelectPlan) -> tuple:
    """Kernel arguments for the optional warm-start state and compacted output."""
    n = like.shape[1]
    assert 1 <= k <= n < 2**15, f"top-K needs 1 <= K <= N < 32768, got K={k}, N={n}"
    if state is not None:
        assert state.dtype == torch.int32 and state.shape[0] >= like.shape[0]
    if compact is not None:
        idx, val = compact
        assert idx.dtype == torch.int32 and idx.shape[1] >= k and val.stride() == idx.stride()
    idx, val = compact if compact is not None else (like, like)
    return (
        like if state is None else state,
        idx,
        val,
        idx.stride(0) if compact is not None else 0,
        dict(
            NBITS=_magnitude_bits(like.dtype),
            WARM=state is not None,
            COMPACT=compact is not None,
            RADIX=plan.method == "radix",
        ),
    )


# ---------------------------------------------------------------- multi-program selection
#
# For wide rows one program per row leaves the GPU idle while it counts (23.7 us for an
# 18944-wide row on an H100). Here each row is cut into chunks, one program each, and the
# threshold is found by a two-digit radix select on the 15 magnitude bits:
#   pass 1: each chunk's histogram of the high 8 bits (256 bins), stored per chunk;
#   pass 2: every program sums those into the row's histogram and picks the high digit b1;
#           it stores its chunk's histogram of the low 7 bits among entries with high digit
#           b1 (128 bins) and its count of entries with a higher high digit;
#   pass 3: every program sums pass 2's output into the threshold t = b1:b2 and the count of
#           entries above it, masks its chunk, and breaks ties at t by lowest index from the
#           tied counts of the chunks before its own (and, to compact, their kept counts).
# Per-chunk stores instead of atomics: nothing to zero, and the sums are deterministic.


@triton.jit
def _act_mul(gu_row_ptr, offs, valid, n, y_ptr, RELU2: tl.constexpr):
    """SiLU(gate) * up, or ReLU(gate)^2 * up, at `offs` of a [gate | up] row (any float type),
    with gate, up, the activation and the product each rounded to `y_ptr`'s type, as a model
    computing in that type would."""
    dtype = y_ptr.dtype.element_ty
    g = tl.load(gu_row_ptr + offs, mask=valid, other=0.0).to(dtype).to(tl.float32)
    u = tl.load(gu_row_ptr + n + offs, mask=valid, other=0.0).to(dtype)
    if RELU2:
        r = tl.maximum(g, 0.0)
        a = (r * r).to(dtype)
    else:
        a = (g * tl.sigmoid(g)).to(dtype)
    return (a.to(tl.float32) * u.to(tl.float32)).to(dtype)


@triton.jit
def _mp_hist_hi_kernel(
    src_ptr, y_ptr, h1_ptr, n, stride_src, stride_y, P,
    PRODUCER: tl.constexpr, CHUNK: tl.constexpr, NBITS: tl.constexpr,
):  # fmt: skip
    """Pass 1. PRODUCER 0: the row is `src`; 1 / 2: `src` = [gate | up] (fp32), the row is
    SiLU(gate) * up / ReLU(gate)^2 * up, written (unmasked) to `y` for passes 2 and 3."""
    row = tl.program_id(0)
    p = tl.program_id(1)
    offs = p * CHUNK + tl.arange(0, CHUNK)
    valid = offs < n
    if PRODUCER == 0:
        y = tl.load(src_ptr + row * stride_src + offs, mask=valid, other=0.0)
    else:
        y = _act_mul(src_ptr + row * stride_src, offs, valid, n, y_ptr, PRODUCER == 2)
        tl.store(y_ptr + row * stride_y + offs, y, mask=valid)
    bits = _magnitude(y, valid, NBITS)
    h = tl.histogram(bits >> 7, 256, mask=valid)
    tl.store(h1_ptr + (row * P + p) * 256 + tl.arange(0, 256), h)


@triton.jit
def _mp_hist_lo_kernel(
    x_ptr, stride_x, h1_ptr, h2_ptr, above_ptr, b1_ptr, n, k, P,
    PP: tl.constexpr, CHUNK: tl.constexpr, NBITS: tl.constexpr,
):  # fmt: skip
    """Pass 2: the high digit b1 (every program computes it; program 0 stores it), then this
    chunk's low-digit histogram among entries with high digit b1, and its count above b1."""
    row = tl.program_id(0)
    p = tl.program_id(1)
    chunks = tl.arange(0, PP)
    bins = tl.arange(0, 256)
    tile = tl.load(
        h1_ptr + (row * P + chunks[:, None]) * 256 + bins[None, :],
        mask=(chunks < P)[:, None], other=0,
    )  # fmt: skip
    b1, _ = _digit_pick(tl.sum(tile, axis=0), k, 0, 256)
    offs = p * CHUNK + tl.arange(0, CHUNK)
    valid = offs < n
    bits = _magnitude(tl.load(x_ptr + row * stride_x + offs, mask=valid, other=0.0), valid, NBITS)
    hi = bits >> 7
    h = tl.histogram(bits & 127, 128, mask=valid & (hi == b1))
    tl.store(h2_ptr + (row * P + p) * 128 + tl.arange(0, 128), h)
    tl.store(above_ptr + row * P + p, tl.sum((valid & (hi > b1)).to(tl.int32), axis=0))
    tl.store(b1_ptr + row, b1, mask=p == 0)


@triton.jit
def _mp_mask_kernel(
    x_ptr, stride_x, y_ptr, stride_y, h2_ptr, above_ptr, b1_ptr, n, k, P,
    idx_ptr, val_ptr, stride_c,
    PP: tl.constexpr, CHUNK: tl.constexpr, NBITS: tl.constexpr, COMPACT: tl.constexpr,
):  # fmt: skip
    """Pass 3: the threshold, this chunk's masked entries (ties: lowest index), and, if
    COMPACT, its kept indices and values at their places in the row's index-ordered list."""
    row = tl.program_id(0)
    p = tl.program_id(1)
    chunks = tl.arange(0, PP)
    bins = tl.arange(0, 128)
    tile = tl.load(
        h2_ptr + (row * P + chunks[:, None]) * 128 + bins[None, :],
        mask=(chunks < P)[:, None], other=0,
    )  # fmt: skip
    above_chunks = tl.load(above_ptr + row * P + chunks, mask=chunks < P, other=0)
    b2, above = _digit_pick(tl.sum(tile, axis=0), k, tl.sum(above_chunks, axis=0), 128)
    t = (tl.load(b1_ptr + row) << 7) | b2
    room = k - above
    before = (chunks < p)[:, None]
    tied_before = tl.sum(tl.sum(tl.where(before & (bins == b2)[None, :], tile, 0), axis=1), axis=0)
    offs = p * CHUNK + tl.arange(0, CHUNK)
    valid = offs < n
    y = tl.load(x_ptr + row * stride_x + offs, mask=valid, other=0.0)
    bits = _magnitude(y, valid, NBITS)
    is_above = bits > t
    tied = bits == t
    scan = tl.cumsum(is_above.to(tl.int32) + (tied.to(tl.int32) << 16), axis=0)
    n_tied = (scan >> 16) + tied_before  # tied entries of the row up to and including i
    keep = is_above | (tied & (n_tied <= room))
    tl.store(y_ptr + row * stride_y + offs, tl.where(keep, y, 0.0).to(y.dtype), mask=valid)
    if COMPACT:
        larger = tl.where(before & (bins > b2)[None, :], tile, 0)
        above_before = tl.sum(tl.where(chunks < p, above_chunks, 0), axis=0) + tl.sum(
            tl.sum(larger, axis=1), axis=0
        )
        pos = above_before + (scan & 0xFFFF) + tl.minimum(n_tied, room) - 1
        tl.store(idx_ptr + row * stride_c + pos, offs, mask=keep)
        tl.store(val_ptr + row * stride_c + pos, y, mask=keep)


def _multi_select(src, y, n, k, compact, plan: SelectPlan, producer: int = 0) -> None:
    """Rows of `src` (producer 0; else [gate | up], see pass 1) -> `y` with the top-K kept."""
    rows = y.shape[0]
    assert _magnitude_bits(y.dtype) == 15, "multi-program selection is for bf16 / fp16"
    chunks = triton.cdiv(n, plan.chunk)
    h1 = torch.empty(rows, chunks, 256, device=y.device, dtype=torch.int32)
    h2 = torch.empty(rows, chunks, 128, device=y.device, dtype=torch.int32)
    above = torch.empty(rows, chunks, device=y.device, dtype=torch.int32)
    b1 = torch.empty(rows, device=y.device, dtype=torch.int32)
    grid = (rows, chunks)
    common = dict(CHUNK=plan.chunk, NBITS=15, num_warps=plan.warps(n))
    _mp_hist_hi_kernel[grid](
        src, y, h1, n, src.stride(0), y.stride(0), chunks, PRODUCER=producer, **common
    )
    x = src if producer == 0 else y
    pp = triton.next_power_of_2(chunks)
    _mp_hist_lo_kernel[grid](x, x.stride(0), h1, h2, above, b1, n, k, chunks, PP=pp, **common)
    idx, val = compact if compact is not None else (b1, b1)
    _mp_mask_kernel[grid](
        x, x.stride(0), y, y.stride(0), h2, above, b1, n, k, chunks, idx, val,
        idx.stride(0) if compact is not None else 0, PP=pp, COMPACT=compact is not None,
        **common,
    )  # fmt: skip


# ---------------------------------------------------------------- selection ops


def select_topk(
    x: torch.Tensor,
    k: int,
    out: torch.Tensor | None = None,
    state: torch.Tensor | None = None,
    compact: tuple[torch.Tensor, torch.Tensor] | None = None,
    plan: SelectPlan | None = None,
) -> torch.Tensor:
    """`x` (B, N) with all but each row's `k` largest-|x| entries zeroed (ties: lowest index).

    `state` (B,) int32: each row's previous threshold, used as the search's starting point and
    updated (any value is correct, a close one is fast; zeros mean none). `compact` = (idx, val),
    each (B, >=k): also write the kept indices (int32) and values, in index order. `plan`: how
    to run it (default: the tuned plan for this shape, see `select_plan`)."""
    assert x.dim() == 2 and x.stride(1) == 1, "select_topk wants a row-major (B, N) tensor"
    out = torch.empty_like(x) if out is None else out
    n = x.shape[1]
    plan = select_plan("select", x.shape[0], n, x.dtype, plan, compact is not None)
    st, idx, val, stride_c, flags = _selection_args(x, k, state, compact, plan)
    if plan.method == "multi":
        _multi_select(x, out, n, k, compact, plan)
        return out
    _select_kernel[(x.shape[0],)](
        x, out, n, k, x.stride(0), out.stride(0), st, idx, val, stride_c,
        BLOCK=_row_block(n), num_warps=plan.warps(n), **flags,
    )  # fmt: skip
    return out


@triton.jit
def _add_rmsnorm_select_kernel(
    h_ptr, d_ptr, w_ptr, y_ptr, n, k, eps, stride_h, stride_d, stride_y,
    state_ptr, idx_ptr, val_ptr, stride_c,
    HAS_DELTA: tl.constexpr, SELECT: tl.constexpr, BLOCK: tl.constexpr, NBITS: tl.constexpr,
    WARM: tl.constexpr, COMPACT: tl.constexpr, RADIX: tl.constexpr,
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
        _select(
            y, valid, offs, k, row, y_ptr, stride_y, state_ptr, idx_ptr, val_ptr, stride_c,
            NBITS, WARM, COMPACT, RADIX,
        )  # fmt: skip
    else:
        tl.store(y_ptr + row * stride_y + offs, y, mask=valid)


def add_rmsnorm_select(
    h: torch.Tensor,
    delta: torch.Tensor | None,
    weight: torch.Tensor,
    eps: float,
    k: int | None,
    out: torch.Tensor,
    state: torch.Tensor | None = None,
    compact: tuple[torch.Tensor, torch.Tensor] | None = None,
    plan: SelectPlan | None = None,
) -> torch.Tensor:
    """`h += delta` (in place, rounded to h's dtype), then `out = TopK_k(RMSNorm(h) * weight)`.

    `delta` may be an fp32 accumulator or a tensor of h's dtype; `k=None` skips the selection;
    `state`, `compact`, `plan` as for `select_topk` (a "multi" plan normalises first, then
    selects in place: one launch more).
    """
    n = h.shape[1]
    plan = select_plan("add_rmsnorm", h.shape[0], n, h.dtype, plan, compact is not None)
    multi = k is not None and plan.method == "multi"
    st, idx, val, stride_c, flags = _selection_args(h, k or 1, state, compact, plan)
    _add_rmsnorm_select_kernel[(h.shape[0],)](
        h, h if delta is None else delta, weight, out, n, k or 0, eps,
        h.stride(0), 0 if delta is None else delta.stride(0), out.stride(0),
        st, idx, val, stride_c, HAS_DELTA=delta is not None, SELECT=k is not None and not multi,
        BLOCK=_row_block(n), num_warps=_row_warps(n) if multi else plan.warps(n), **flags,
    )  # fmt: skip
    if multi:
        _multi_select(out, out, n, k, compact, plan)
    return out


@triton.jit
def _act_mul_select_kernel(
    gu_ptr, y_ptr, n, k, stride_gu, stride_y, state_ptr, idx_ptr, val_ptr, stride_c,
    RELU2: tl.constexpr, BLOCK: tl.constexpr, NBITS: tl.constexpr,
    WARM: tl.constexpr, COMPACT: tl.constexpr, RADIX: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    valid = offs < n
    y = _act_mul(gu_ptr + row * stride_gu, offs, valid, n, y_ptr, RELU2)
    _select(
        y, valid, offs, k, row, y_ptr, stride_y, state_ptr, idx_ptr, val_ptr, stride_c,
        NBITS, WARM, COMPACT, RADIX,
    )  # fmt: skip


@triton.jit
def _act_mul_kernel(
    gu_ptr, y_ptr, n, stride_gu, stride_y, RELU2: tl.constexpr, CHUNK: tl.constexpr
):  # fmt: skip
    """act(gate) * up without a selection: CHUNK-wide pieces of a row on separate programs."""
    row = tl.program_id(0)
    offs = tl.program_id(1) * CHUNK + tl.arange(0, CHUNK)
    valid = offs < n
    y = _act_mul(gu_ptr + row * stride_gu, offs, valid, n, y_ptr, RELU2)
    tl.store(y_ptr + row * stride_y + offs, y, mask=valid)


ACT_MUL_CHUNK = 1024  # without a selection, one program per this many outputs


def act_mul_select(
    gate_up: torch.Tensor,
    k: int | None,
    out: torch.Tensor,
    relu2: bool = False,
    state: torch.Tensor | None = None,
    compact: tuple[torch.Tensor, torch.Tensor] | None = None,
    plan: SelectPlan | None = None,
) -> torch.Tensor:
    """`out = TopK_k(act(gate) * up)` for `gate_up = [gate | up]` (B, 2I); act is SiLU or
    squared ReLU; gate and up are rounded to out's dtype first, as a model computing them in
    that dtype would. `k=None` skips the selection; `state`, `compact`, `plan` as for
    `select_topk` (a "multi" plan computes act * up in its first pass)."""
    n = out.shape[1]
    assert gate_up.shape[1] == 2 * n and gate_up.stride(1) == 1
    if k is None:  # elementwise: spread over the GPU (one program per row took 11 us at 18944)
        grid = (out.shape[0], triton.cdiv(n, ACT_MUL_CHUNK))
        _act_mul_kernel[grid](
            gate_up, out, n, gate_up.stride(0), out.stride(0), RELU2=relu2, CHUNK=ACT_MUL_CHUNK
        )
        return out
    plan = select_plan("act_mul", out.shape[0], n, out.dtype, plan, compact is not None)
    st, idx, val, stride_c, flags = _selection_args(out, k, state, compact, plan)
    if plan.method == "multi":
        _multi_select(gate_up, out, n, k, compact, plan, producer=2 if relu2 else 1)
        return out
    _act_mul_select_kernel[(out.shape[0],)](
        gate_up, out, n, k, gate_up.stride(0), out.stride(0), st, idx, val, stride_c,
        RELU2=relu2, BLOCK=_row_block(n), num_warps=plan.warps(n), **flags,
    )  # fmt: skip
    return out


# ---------------------------------------------------------------- sparse GEMV


@dataclass(frozen=True)
class GemvConfig:
    """Tile of the sparse GEMV: BM outputs x BK inputs per step, `programs` ~ grid size;
    `gather`: batch 1 walks the compacted list of kept inputs instead of masking rows."""

    bm: int = 128
    bk: int = 32
    programs: int = 528
    num_warps: int = 4
    num_stages: int = 3
    gather: bool = False


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


@triton.jit
def _gather_gemv_kernel(
    idx_ptr, val_ptr, wt_ptr, out_ptr, K, M, k_iters, stride_w,
    BM: tl.constexpr, BK: tl.constexpr, EVEN_M: tl.constexpr,
):  # fmt: skip
    """Batch 1: `out += val @ wt[idx]` over the K kept inputs; every loaded row is needed."""
    pid_m = tl.program_id(0)
    pid_k = tl.program_id(1)
    offs_m = pid_m * BM + tl.arange(0, BM)
    mask_m = offs_m < M
    start = pid_k * k_iters * BK
    acc2 = tl.zeros([BK, BM], dtype=tl.float32)
    for i in range(k_iters):
        j = start + i * BK + tl.arange(0, BK)
        live = j < K
        rows = tl.load(idx_ptr + j, mask=live, other=0)
        v = tl.load(val_ptr + j, mask=live, other=0.0)
        w_ptrs = wt_ptr + rows[:, None].to(tl.int64) * stride_w + offs_m[None, :]
        if EVEN_M:
            w = tl.load(w_ptrs, mask=live[:, None], other=0.0)
        else:
            w = tl.load(w_ptrs, mask=live[:, None] & mask_m[None, :], other=0.0)
        acc2 += v.to(tl.float32)[:, None] * w.to(tl.float32)
    tl.atomic_add(out_ptr + offs_m, tl.sum(acc2, axis=0), mask=mask_m)


# Triton 3.9's interpreter gets bf16 `tl.dot` wrong (values off by 1e10), so under the
# interpreter the batched GEMV multiplies in fp32; compiled GPU code uses the bf16 tensor cores.
INTERPRETED = type(_sparse_gemv_kernel).__name__ == "InterpretedFunction"

# Tuned tiles and their measured us, per (tile rows, N, M, dtype, compacted list given).
_TUNED: dict[tuple, GemvConfig] = {}
_TUNED_US: dict[tuple, float] = {}


def _gemv_key(rows: int, n: int, m: int, dtype: torch.dtype, gather: bool) -> tuple:
    return _tile_rows(rows), n, m, dtype, bool(gather) and rows == 1


def gemv_config(rows: int, n: int, m: int, dtype: torch.dtype, gather: bool = False) -> GemvConfig:
    """The tuned tile for this shape if `tune_gemv` measured one, else a default. `gather`:
    the caller passes the compacted list (batch 1), so a gather tile may be chosen."""
    tuned = _TUNED.get(_gemv_key(rows, n, m, dtype, gather))
    if tuned is not None:
        return tuned
    if rows == 1:
        return GemvConfig(bm=64, bk=32, programs=2112, num_warps=2, gather=gather)
    return GemvConfig(bk=64)


def set_gemv_config(
    rows: int, n: int, m: int, dtype: torch.dtype, cfg: GemvConfig, gather: bool = False
) -> None:
    _TUNED[_gemv_key(rows, n, m, dtype, gather)] = cfg


def _tile_rows(rows: int) -> int:
    return 1 if rows == 1 else MAX_TILE_ROWS


def sparse_gemv(
    x: torch.Tensor,
    wt: torch.Tensor,
    out: torch.Tensor,
    skip_zero: bool = True,
    config: GemvConfig | None = None,
    compact: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """`out += x @ wt` in fp32, reading only the rows of `wt` (N, M) whose input is nonzero in
    some row of `x` (B, N). `out` (B, M) fp32 must hold zeros (or a sum to add to).

    `compact` = (idx, val), each (B, K): the kept inputs as `select_topk` compacts them; at
    batch 1 the GEMV may then walk that list (config.gather) instead of masking rows."""
    b, n = x.shape
    m = wt.shape[1]
    assert wt.shape[0] == n and wt.stride(1) == 1 and x.stride(1) == 1, "shapes or layout"
    assert out.dtype == torch.float32 and out.shape == (b, m) and out.stride(1) == 1
    if b == 1:
        cfg = config or gemv_config(1, n, m, x.dtype, gather=compact is not None)
        if cfg.gather and compact is not None:
            idx, val = compact
            _launch_gather(idx[0], val[0], wt, out, cfg)
        else:
            _launch_gemv(x, wt, out, skip_zero, cfg)
        return out
    for start in range(0, b, MAX_TILE_ROWS):
        stop = min(b, start + MAX_TILE_ROWS)
        _launch_gemv(x[start:stop], wt, out[start:stop], skip_zero, config)
    return out


def _split(n: int, m: int, cfg: GemvConfig) -> tuple[int, int, int]:
    """(output blocks, input splits, input blocks per split) for about cfg.programs programs."""
    grid_m = triton.cdiv(m, cfg.bm)
    k_blocks = triton.cdiv(n, cfg.bk)
    splits = max(1, min(k_blocks, cfg.programs // grid_m))
    k_iters = triton.cdiv(k_blocks, splits)
    return grid_m, triton.cdiv(k_blocks, k_iters), k_iters


def _launch_gather(idx, val, wt, out, cfg):
    k, m = idx.shape[0], wt.shape[1]
    grid_m, splits, k_iters = _split(k, m, cfg)
    _gather_gemv_kernel[(grid_m, splits)](
        idx, val, wt, out, k, m, k_iters, wt.stride(0),
        BM=cfg.bm, BK=cfg.bk, EVEN_M=m % cfg.bm == 0,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )  # fmt: skip


def _launch_gemv(x, wt, out, skip_zero, config):
    rows, n = x.shape
    m = wt.shape[1]
    cfg = config or gemv_config(rows, n, m, x.dtype)
    grid_m, splits, k_iters = _split(n, m, cfg)
    _sparse_gemv_kernel[(grid_m, splits)](
        x, wt, out, rows, n, m, k_iters, x.stride(0), wt.stride(0), out.stride(0),
        BB=_tile_rows(rows), BM=cfg.bm, BK=cfg.bk, SKIP_ZERO=skip_zero, EVEN_M=m % cfg.bm == 0,
        IEEE=x.dtype == torch.float32 or INTERPRETED, num_warps=cfg.num_warps,
        num_stages=cfg.num_stages,
    )  # fmt: skip


def sparse_linear(
    x: torch.Tensor, wt: torch.Tensor, k: int, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """`TopK_k(x) @ wt (+ bias)` in fp32: selection pre-pass, then the sparse GEMV."""
    out = torch.zeros(x.shape[0], wt.shape[1], device=x.device, dtype=torch.float32)
    if bias is not None:
        out += bias.float()
    compact = None
    if x.shape[0] == 1:
        compact = (torch.empty(1, k, device=x.device, dtype=torch.int32), x.new_empty(1, k))
    return sparse_gemv(select_topk(x, k, compact=compact), wt, out, compact=compact)


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


TILES = (
    GemvConfig(bm=128, bk=32, programs=1056, num_warps=4),
    GemvConfig(bm=128, bk=64, programs=1056, num_warps=4),
    GemvConfig(bm=64, bk=32, programs=2112, num_warps=2),
    GemvConfig(bm=64, bk=32, programs=4224, num_warps=2),
    GemvConfig(bm=64, bk=64, programs=4224, num_warps=4),
    GemvConfig(bm=128, bk=32, programs=528, num_warps=4),
)


def candidates(rows: int, gather: bool = False) -> list[GemvConfig]:
    """Tiles to try: the masked kernel's, and, when the caller passes the compacted list (batch
    1 only), the gather kernel's too."""
    gathered = [replace(c, gather=True) for c in TILES] if gather and rows == 1 else []
    return [*TILES, *gathered]


def tune_gemv(
    rows: int,
    n: int,
    m: int,
    dtype: torch.dtype,
    density: float = 0.5,
    l2_bytes: int = 2**27,
    gather: bool = False,
    device: str = "cuda",
    timer=graph_time_us,
) -> tuple[GemvConfig, float]:
    """Time each candidate tile on this GPU (random inputs at `density`, weight copies rotated
    past the L2 cache) and remember the fastest for this shape and call (`gather`: batch 1
    with the compacted list); returns it and its median us (the remembered ones when this was
    tuned before; us = nan if none was measured). A candidate that fails to compile or run is
    skipped. (`device`, `timer`: for tests of this logic on a CPU.)"""
    key = _gemv_key(rows, n, m, dtype, gather)
    if key in _TUNED:
        return _TUNED[key], _TUNED_US.get(key, float("nan"))
    dev = torch.device(device)
    copies = max(1, min(16, math.ceil(l2_bytes / (n * m * dtype.itemsize))))
    wts = [torch.randn(n, m, device=dev, dtype=dtype) / math.sqrt(n) for _ in range(copies)]
    k = kept_features(density, n)
    compact = None
    if gather and rows == 1:
        compact = (
            torch.empty(1, k, device=dev, dtype=torch.int32),
            torch.empty(1, k, device=dev, dtype=dtype),
        )
    x = select_topk(torch.randn(rows, n, device=dev, dtype=dtype), k, compact=compact)
    out = torch.empty(rows, m, device=dev, dtype=torch.float32)
    best, best_us = None, float("inf")
    for cfg in candidates(rows, gather):
        try:
            us = timer(
                lambda i, cfg=cfg: sparse_gemv(x, wts[i % copies], out, config=cfg, compact=compact)
            )
        except Exception as e:  # noqa: BLE001 - a tile this GPU cannot run is not a candidate
            print(f"tune_gemv: {cfg} failed: {type(e).__name__}: {str(e)[:200]}")
            continue
        if us < best_us:
            best, best_us = cfg, us
    if best is None:
        raise RuntimeError(f"no GEMV tile ran for rows={rows}, n={n}, m={m}")
    set_gemv_config(rows, n, m, dtype, best, gather)
    _TUNED_US[key] = best_us
    return best, best_us


def select_candidates(n: int, dtype: torch.dtype) -> list[SelectPlan]:
    """Plans to time for rows of `n`: the bitwise search (the old path, always first), radix
    select in one program, and, for 16-bit rows of 4096 or more, the multi-program select
    (1024-wide chunks; also 2048 above 8192 wide). Narrower rows: three launches cannot beat
    one; and each candidate costs Triton compilations at tuning time."""
    plans = [SelectPlan("search"), SelectPlan("radix")]
    if _magnitude_bits(dtype) == 15 and n >= MULTI_MIN_WIDTH:
        plans += [SelectPlan("multi", 4, c) for c in ((1024, 2048) if n > 8192 else (1024,))]
    return plans


MULTI_MIN_WIDTH = 4096


def _site_op(kind, rows, n, k, dtype, compact, relu2, sets, dev, gen=None):
    """`(fn(i, plan, state), out, compact)` running selection site `kind` on input set i % sets
    (random rows drawn from `gen`; add_rmsnorm updates its residual rows in place, as in the
    decoder)."""
    out = torch.empty(rows, n, device=dev, dtype=dtype)
    cp = None
    if compact:
        cp = (
            torch.empty(rows, k, device=dev, dtype=torch.int32),
            torch.empty(rows, k, device=dev, dtype=dtype),
        )
    if kind == "select":
        xs = [torch.randn(rows, n, device=dev, dtype=dtype, generator=gen) for _ in range(sets)]

        def fn(i, plan, state):
            return select_topk(xs[i % sets], k, out, state=state, compact=cp, plan=plan)

    elif kind == "add_rmsnorm":
        hs = [torch.randn(rows, n, device=dev, dtype=dtype, generator=gen) for _ in range(sets)]
        deltas = [1e-3 * torch.randn(rows, n, device=dev, generator=gen) for _ in range(sets)]
        w = 1 + 0.1 * torch.randn(n, device=dev, dtype=dtype, generator=gen)

        def fn(i, plan, state):
            j = i % sets
            return add_rmsnorm_select(hs[j], deltas[j], w, 1e-6, k, out, state, cp, plan)

    else:
        gus = [torch.randn(rows, 2 * n, device=dev, generator=gen) for _ in range(sets)]

        def fn(i, plan, state):
            return act_mul_select(gus[i % sets], k, out, relu2, state, cp, plan)

    return fn, out, cp


def tune_select_site(
    kind: str,
    rows: int,
    n: int,
    dtype: torch.dtype,
    density: float = 0.5,
    compact: bool = False,
    relu2: bool = False,
    device: str = "cuda",
    timer=graph_time_us,
) -> tuple[SelectPlan, dict[SelectPlan, float]]:
    """Time each candidate plan for selection site `kind` ("select": alone; "add_rmsnorm",
    "act_mul": fused into that op) on this GPU, exactly as the decoder calls it (a warm-start
    state, the compacted list if `compact`), and remember the fastest. Each candidate is first
    checked against the bitwise search (same output, same list) on fresh inputs; a candidate
    that fails to compile, run or match is dropped, with a line saying why, so the worst case is
    the old path. Returns (plan, {plan: median us}); when this site was tuned before, the
    remembered plan and its time ({} if it was set, not measured).
    (`device`, `timer`: for tests of this logic on a CPU.)"""
    key = _site_key(kind, rows, n, dtype, compact)
    if key in _PLANS:
        return _PLANS[key], {_PLANS[key]: _PLAN_US[key]} if key in _PLAN_US else {}
    k = kept_features(density, n)
    sets = 4
    fn, _, _ = _site_op(kind, rows, n, k, dtype, compact, relu2, sets, device)
    state = torch.zeros(rows, device=device, dtype=torch.int32)

    def one_call(plan):  # the same fresh inputs for every plan
        gen = torch.Generator(device=device).manual_seed(1234)
        check_fn, check_out, check_cp = _site_op(
            kind, rows, n, k, dtype, compact, relu2, 1, device, gen
        )
        check_fn(0, plan, None if plan.method == "search" else torch.zeros_like(state))
        return check_out, *(check_cp or ())

    want = one_call(SelectPlan())
    times: dict[SelectPlan, float] = {}
    for plan in select_candidates(n, dtype):
        try:
            if plan.method != "search":
                got = one_call(plan)
                if not all(torch.equal(a, b) for a, b in zip(got, want, strict=True)):
                    raise AssertionError("output differs from the bitwise search's")
            times[plan] = timer(lambda i, plan=plan: fn(i, plan, state))
        except Exception as e:  # noqa: BLE001 - a plan this GPU cannot run is not a candidate
            print(f"tune_select_site: {kind} n={n} rows={rows} {plan} dropped: "
                  f"{type(e).__name__}: {str(e)[:200]}")  # fmt: skip
    if not times:
        raise RuntimeError(f"no selection plan ran for {kind} n={n} rows={rows}")
    best = min(times, key=times.get)
    set_select_plan(kind, rows, n, dtype, best, compact)
    _PLAN_US[key] = times[best]
    return best, times
