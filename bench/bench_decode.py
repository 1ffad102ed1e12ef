"""Q-Sparse decoding benchmark: fused top-K sparse GEMV vs dense cuBLAS, and tokens/s end to end.

    PYTHONPATH=. python3 bench/bench_decode.py                  # GPU: everything (~3-4 min, H100)
    PYTHONPATH=. python3 bench/bench_decode.py --only kernels   # sections: check,kernels,e2e
    PYTHONPATH=. python3 bench/bench_decode.py --only profile --models 7B   # not in the default
    TRITON_INTERPRET=1 PYTHONPATH=. python bench/bench_decode.py --dry-run   # CPU: code paths only

Sections, each row measured side by side in the same run on the same card:

- check: the kernels against their PyTorch twins / float64 on the benchmark shapes (relative
  error), and the decode path against transformers (teacher-forced logits, greedy tokens) on a
  4-layer model of the Qwen2-0.5B shape, dense and Q-Sparse (keep 0.5).
- kernels: per projection of Qwen2-0.5B and Qwen2-7B (q/k/v fused, o, gate/up fused, down),
  batch 1/4/16: dense `F.linear` (cuBLAS) vs the fused sparse linear (selection pre-pass +
  zeroing + sparse GEMV) at densities 1.0/0.6/0.5/0.4/0.25, with the bandwidth floor of the
  bytes each must read (weight rows of the union of the batch's masks). Timed as CUDA-graph
  replays of 20 calls over weight copies rotated past the L2 cache, median of do_bench.
- e2e: random-init Qwen2-0.5B and Qwen2-7B shapes, batch 1, 16-token prompt, 128 new tokens,
  greedy: dense vs Q-Sparse keep 0.6 / 0.5 through the same compiled decoder, and transformers
  `generate` (eager, dynamic cache) on the same weights. generate() calls and prefills: the
  fastest of 5 wall-clock timings; decode steps: CUDA-event time of 127 graph replays.
- profile (only when asked for): one batch-1 decode step kernel by kernel (torch.profiler), and
  the graph replay's time between kernels.

Tables are printed and written to $OUT (or bench/out) as results.md and results.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F

from leanstar.sparse import decode_model, torch_ops
from leanstar.sparse.decode_model import (
    COMPACT_MAX_WIDTH,
    QWEN2_0_5B,
    QWEN2_7B,
    Keep,
    Shape,
    Weights,
    compact_modes,
)

DENSITIES = (1.0, 0.6, 0.5, 0.4, 0.25)
BATCHES = (1, 4, 16)
GRAPH_CALLS = 20  # calls per captured graph in kernel timings
L2_ROTATE_BYTES = 256 * 2**20  # rotate weight copies until this many bytes (> 50 MB of L2)


# ---------------------------------------------------------------- timing


class Clock:
    """GPU time per call: CUDA-graph replays (kernels.graph_time_us); wall clock on a CPU."""

    def __init__(self, device: torch.device) -> None:
        self.gpu = device.type == "cuda"

    def per_call_us(self, fn, calls: int = GRAPH_CALLS) -> float:
        if not self.gpu:
            t0 = time.perf_counter()
            fn(0)
            return 1e6 * (time.perf_counter() - t0)
        from leanstar.sparse.kernels import graph_time_us

        return graph_time_us(fn, calls)


def copy_bandwidth(device: torch.device) -> float:
    """Device-to-device copy bandwidth in bytes/s, counting bytes read plus bytes written."""
    if device.type != "cuda":
        return float("nan")
    from triton.testing import do_bench

    src = torch.randn(2**29, device=device, dtype=torch.bfloat16)  # 1 GiB
    dst = torch.empty_like(src)
    ms = do_bench(lambda: dst.copy_(src), warmup=10, rep=100, return_mode="median")
    return 2 * src.numel() * 2 / (ms * 1e-3)


# ---------------------------------------------------------------- section: kernels


def projections(shape: Shape) -> list[tuple[str, int, int]]:
    """(name, in_features, out_features) of each fused projection of a layer."""
    s = shape
    return [
        ("qkv", s.hidden, s.qkv_dim),
        ("o", s.heads * s.head_dim, s.hidden),
        ("gate_up", s.hidden, 2 * s.intermediate),
        ("down", s.intermediate, s.hidden),
    ]


def bench_kernels(models, clock, bw, device, dtype, batches, densities, log) -> list[dict]:
    from leanstar.sparse import kernels as kn

    rows_out = []
    for model_name, shape in models:
        for proj, n, m in projections(shape):
            copies = max(1, min(32, math.ceil(L2_ROTATE_BYTES / (n * m * dtype.itemsize))))
            if device.type != "cuda":
                copies = 1
            w = [0.02 * torch.randn(m, n, device=device, dtype=dtype) for _ in range(copies)]
            wt = [t.t().contiguous() for t in w]
            # wide batch-1 inputs both ways, with and without the list (the decoder times both)
            runs = [(b, listed) for b in batches for listed in compact_modes(b, n)]
            for b, listed in runs:
                cfg = "default"
                if device.type == "cuda":
                    cfg, _ = kn.tune_gemv(b, n, m, dtype, density=0.5, gather=listed)
                xs = [torch.randn(b, n, device=device, dtype=dtype) for _ in range(copies)]
                dense_us = clock.per_call_us(
                    lambda i, xs=xs, w=w, c=copies: F.linear(xs[i % c], w[i % c])
                )
                dense_floor = (n * m + b * n + b * m) * dtype.itemsize / bw * 1e6
                label = proj + (" (list)" if listed else " (masked)" if b == 1 else "")
                row = dict(model=model_name, proj=label, n=n, m=m, batch=b, dense_us=dense_us,
                           dense_floor_us=dense_floor, copies=copies, config=str(cfg),
                           select=str(kn.select_plan("select", b, n, dtype, compact=listed)))  # fmt: skip
                for d in densities:
                    k = torch_ops.kept_features(d, n)
                    outs = [torch.empty(b, m, device=device) for _ in range(copies)]

                    state = torch.zeros(b, device=device, dtype=torch.int32)
                    cp = None
                    if listed:
                        cp = (torch.empty(1, k, device=device, dtype=torch.int32),
                              torch.empty(1, k, device=device, dtype=dtype))  # fmt: skip

                    def sparse(i, k=k, outs=outs, xs=xs, wt=wt, c=copies, st=state, cp=cp):
                        j = i % c
                        xk = kn.select_topk(xs[j], k, state=st, compact=cp)
                        return kn.sparse_gemv(xk, wt[j], outs[j].zero_(), compact=cp)

                    us = clock.per_call_us(sparse)
                    rows_read = int((torch_ops.select_topk(xs[0], k) != 0).any(0).sum())
                    floor = rows_read * m * dtype.itemsize + 2 * b * n * dtype.itemsize + 4 * b * m
                    row[f"d{d}"] = dict(us=us, rows_read=rows_read / n, floor_us=floor / bw * 1e6)
                rows_out.append(row)
                log(kernel_line(row, densities))
    return rows_out


def kernel_line(r: dict, densities) -> str:
    cells = []
    for d in densities:
        c = r[f"d{d}"]
        cells.append(
            f"{c['us']:7.1f} ({r['dense_us'] / c['us']:4.2f}x, {c['rows_read']:4.0%} rows, "
            f"{c['floor_us'] / c['us']:4.0%} of floor)"
        )
    return (
        f"| {r['model']} {r['proj']} {r['n']}->{r['m']} | {r['batch']} | {r['dense_us']:6.1f} "
        f"({r['dense_floor_us'] / r['dense_us']:4.0%}) | " + " | ".join(cells) + " |"
    )


def kernel_header(densities) -> str:
    cols = " | ".join(f"sparse d={d}: us (speedup, rows read, floor/time)" for d in densities)
    sep = "|".join(["---"] * (3 + len(densities)))
    return f"| projection | batch | dense us (floor/time) | {cols} |\n|{sep}|"


def select_lines(models, dtype, log, clock) -> list[dict]:
    """Tune every selection site (the plans the kernels table and the decoder then use) and
    print each candidate's time: the bitwise search is the old path."""
    from leanstar.sparse import kernels as kn

    sites = []  # (kind, rows, n): the decoder's sites at batch 1, and each width alone
    for _, s in models:
        sites += [("add_rmsnorm", 1, s.hidden), ("act_mul", 1, s.intermediate)]
    widths = sorted({n for _, shape in models for _, n, _ in projections(shape)})
    sites += [("select", 1, n) for n in widths]
    sites += [("select", 16, n) for n in widths if n > COMPACT_MAX_WIDTH]
    log(
        "| site | N | batch | compacted list | "
        + " | ".join(SELECT_COLUMNS)
        + " | chosen | old / chosen | tuning s |"
    )
    log("|" + "|".join(["---"] * (7 + len(SELECT_COLUMNS))) + "|")
    rows_out = []
    runs = [(kind, rows, n, c) for kind, rows, n in sites for c in compact_modes(rows, n)]
    for kind, rows, n, compact in sorted(set(runs), key=lambda t: (t[2], t[0], t[1], t[3])):
        t0 = time.perf_counter()
        try:
            best, times = kn.tune_select_site(
                kind, rows, n, dtype, 0.5, compact, device=DEVICE_OF[clock.gpu],
                timer=clock.per_call_us,
            )  # fmt: skip
        except Exception as e:  # noqa: BLE001 - then the site keeps the bitwise search
            log(f"| {kind} | {n} | {rows} | {'list' if compact else '-'} | tuning FAILED: "
                f"{type(e).__name__}: {str(e)[:200]} |")  # fmt: skip
            continue
        by_name = {_plan_column(p): us for p, us in times.items()}
        cells = [f"{by_name[c]:.1f}" if c in by_name else "-" for c in SELECT_COLUMNS]
        old = times.get(kn.SelectPlan(), float("nan"))
        log(f"| {kind} | {n} | {rows} | {'list' if compact else '-'} | " + " | ".join(cells)
            + f" | {_plan_column(best)} | {old / times[best]:.2f}x "
            + f"| {time.perf_counter() - t0:.1f} |")  # fmt: skip
        rows_out.append(dict(kind=kind, n=n, rows=rows, compact=compact, best=str(best),
                             times={str(p): us for p, us in times.items()},
                             tune_s=time.perf_counter() - t0))  # fmt: skip
    return rows_out


DEVICE_OF = {True: "cuda", False: "cpu"}
SELECT_COLUMNS = ("search (old)", "radix", "multi 1024", "multi 2048")


def _plan_column(plan) -> str:
    if plan.method == "search":
        return "search (old)"
    return plan.method if plan.method == "radix" else f"multi {plan.chunk}"


def naive_line(shape_name, n, m, clock, device, dtype) -> str:
    """The issue's naive path for reference: torch.topk + gather + matmul, batch 1, d=0.5."""
    w = 0.02 * torch.randn(m, n, device=device, dtype=dtype)
    x = torch.randn(1, n, device=device, dtype=dtype)
    k = torch_ops.kept_features(0.5, n)

    def naive(i):
        idx = torch.topk(x.abs(), k, dim=-1).indices[0]
        return x[:, idx] @ w[:, idx].t()

    def topk_only(i):
        return torch.topk(x.abs(), k, dim=-1)

    return (
        f"naive {shape_name} {n}->{m}, batch 1, d=0.5: topk+gather+matmul "
        f"{clock.per_call_us(naive, 5):.1f} us, torch.topk alone {clock.per_call_us(topk_only, 5):.1f} us"
    )


# ---------------------------------------------------------------- section: check


def check_kernels(models, device, dtype, log) -> list[str]:
    from leanstar.sparse import attention_kernels as ak
    from leanstar.sparse import kernels as kn

    lines = []
    for model_name, shape in models:
        for proj, n, m in projections(shape):
            errs, exact = [], True
            k = torch_ops.kept_features(0.5, n)
            wt = 0.02 * torch.randn(n, m, device=device, dtype=dtype)
            for b, gather in ((1, True), (1, False), (4, False), (16, False)):
                state = torch.zeros(b, device=device, dtype=torch.int32)
                cp = (torch.empty(1, k, device=device, dtype=torch.int32),
                      torch.empty(1, k, device=device, dtype=dtype)) if b == 1 else None  # fmt: skip
                for _ in range(3):  # cold, then warm-started selections on fresh inputs
                    x = torch.randn(b, n, device=device, dtype=dtype)
                    sel = kn.select_topk(x, k, state=state, compact=cp)
                    exact &= torch.equal(sel, torch_ops.select_topk(x, k))
                    if cp is not None:
                        cols = (sel != 0).nonzero()[:, 1].view(1, k)
                        exact &= torch.equal(cp[0].long(), cols)
                out = torch.full((b, m), float("nan"), device=device).zero_()
                cfg = kn.GemvConfig(bm=64, bk=32, programs=2112, num_warps=2, gather=gather)
                kn.sparse_gemv(sel, wt, out, config=cfg, compact=cp)
                want = sel.double() @ wt.double()
                errs.append(float((out.double() - want).norm() / want.norm()))
            lines.append(
                f"{model_name} {proj} {n}->{m}: selection (cold + warm) == reference: {exact}; "
                f"sparse GEMV rel. error vs fp64 (batch 1 gather / 1 masked / 4 / 16): "
                + ", ".join(f"{e:.1e}" for e in errs)
            )
            log(lines[-1])
    # Selection plans other than the bitwise search: exact on every width, batch 1/4/16.
    widths = sorted({n for _, shape in models for _, n, _ in projections(shape)})
    plans = [kn.SelectPlan("radix")] + [kn.SelectPlan("multi", 4, c) for c in (1024, 2048)]
    for plan in plans:
        # Where the tuner tries it (every width on a dry run, whose widths are all narrow).
        checked = [n for n in widths if plan in kn.select_candidates(n, dtype)] or widths
        try:
            exact = True
            for n in checked:
                k = torch_ops.kept_features(0.5, n)
                for b in (1, 4, 16):
                    x = torch.randn(b, n, device=device, dtype=dtype)
                    cp = (torch.empty(b, k, device=device, dtype=torch.int32),
                          torch.empty(b, k, device=device, dtype=dtype))  # fmt: skip
                    sel = kn.select_topk(x, k, compact=cp, plan=plan)
                    want = torch_ops.select_topk(x, k)
                    cols = torch_ops.topk_mask(x, k).nonzero()[:, 1].view(b, k)
                    exact &= torch.equal(sel, want) and torch.equal(cp[0].long(), cols)
            lines.append(f"selection {plan} == reference (widths {checked}, batch 1/4/16): {exact}")
        except Exception as e:  # noqa: BLE001 - the tuner drops such a plan too
            lines.append(f"selection {plan} FAILED: {type(e).__name__}: {str(e)[:300]}")
        log(lines[-1])
    # Fused elementwise kernels vs their twins (GPU rounds to nearest like torch).
    s = models[0][1]
    b = 4
    h = torch.randn(b, s.hidden, device=device, dtype=dtype)
    delta = torch.randn(b, s.hidden, device=device)
    wn = 1 + 0.1 * torch.randn(s.hidden, device=device, dtype=dtype)
    o1, o2, h1, h2 = torch.empty_like(h), torch.empty_like(h), h.clone(), h.clone()
    kn.add_rmsnorm_select(h1, delta, wn, 1e-6, s.hidden // 2, o1)
    torch_ops.add_rmsnorm_select(h2, delta, wn, 1e-6, s.hidden // 2, o2)
    gu = torch.randn(b, 2 * s.intermediate, device=device)
    a1 = torch.empty(b, s.intermediate, device=device, dtype=dtype)
    a2 = torch.empty_like(a1)
    kn.act_mul_select(gu, s.intermediate // 2, a1)
    torch_ops.act_mul_select(gu, s.intermediate // 2, a2)
    hq, hkv, d, seq = s.heads, s.kv_heads, s.head_dim, 512
    q = torch.randn(b, hq, d, device=device, dtype=dtype)
    kc = torch.randn(b, hkv, seq, d, device=device, dtype=dtype)
    vc = torch.randn_like(kc)
    pos = torch.tensor([0, 100, 300, 511][:b], device=device, dtype=torch.int32)
    at1 = torch.empty(b, hq * d, device=device, dtype=dtype)
    at2 = torch.empty_like(at1)
    ak.decode_attention(q, kc, vc, pos, at1)
    torch_ops.decode_attention(q, kc, vc, pos, at2)
    rel = [
        float((x.double() - y.double()).norm() / y.double().norm())
        for x, y in ((o1, o2), (a1, a2), (at1, at2))
    ]
    masks = torch.equal(o1 != 0, o2 != 0), torch.equal(a1 != 0, a2 != 0)
    lines.append(
        f"fused kernels vs PyTorch twins (rel. error): add+rmsnorm+topk {rel[0]:.1e}, "
        f"silu*up+topk {rel[1]:.1e}, decode attention {rel[2]:.1e}; masks equal: {masks}"
    )
    log(lines[-1])
    return lines


def check_decode(shape, device, dtype, log, layers: int = 4, steps: int = 24) -> list[str]:
    """Teacher-forced logits and greedy tokens of the compiled decoder vs transformers, on a
    `layers`-layer model of the Qwen2-0.5B shape: in fp32 (strict: same masks, same tokens) and
    in `dtype` (bf16: a 1-ulp difference at the top-K threshold flips mask entries, so the
    sparse logits drift from the reference by more than rounding alone)."""
    lines = []
    for dt in (torch.float32, dtype):
        for keep in (None, 0.5):
            lines.append(check_decode_one(shape, device, dt, keep, layers, steps))
            log(lines[-1])
    return lines


def hf_config(s: Shape, layers: int):
    """A transformers config of shape `s` with `layers` layers (untied lm_head, as decoded)."""
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=s.vocab, hidden_size=s.hidden, intermediate_size=s.intermediate,
        num_hidden_layers=layers, num_attention_heads=s.heads, num_key_value_heads=s.kv_heads,
        rope_theta=s.rope_theta, max_position_embeddings=4096, tie_word_embeddings=False,
    )  # fmt: skip


def check_decode_one(s: Shape, device, dtype, keep, layers, steps) -> str:
    from transformers import Qwen2ForCausalLM

    from leanstar.sparse.decode import Decoder

    config = hf_config(s, layers)
    torch.manual_seed(0)
    with torch.device(device):
        hf = Qwen2ForCausalLM(config).to(dtype).eval()
    if keep is not None:  # the project's model patch is the reference (ties to the lowest index)
        from leanstar.config import SparseConfig
        from leanstar.sparse.qsparse import apply_qsparse

        apply_qsparse(hf, SparseConfig(enabled=True, keep_ratio=keep))
    shape = Shape.from_hf(hf.config)
    k = Keep.from_ratios(shape, keep, keep) if keep else None
    weights = Weights.from_hf(hf, transposed=k is not None, device=device, dtype=dtype)
    dec = Decoder(weights, k, max_batch=1, impl="triton", tune=False)
    prompt = torch.randint(0, s.vocab, (16,), generator=torch.Generator().manual_seed(1))
    tokens, _ = dec.generate([prompt.tolist()], 1, steps, "greedy")
    seq = torch.cat([prompt, tokens[0]]).to(device)
    with torch.no_grad():
        ref_logits = hf(seq[None]).logits[0, len(prompt) - 1 : -1].float()
        ref_greedy = hf.generate(
            prompt[None].to(device), max_new_tokens=steps, do_sample=False, min_new_tokens=steps
        )[0, len(prompt) :].cpu()
    # Teacher forcing: step through our own tokens, compare each step's logits.
    m = dec.model
    got = [m.prefill(0, prompt.to(device))]
    for i, t in enumerate(tokens[0][:-1].tolist()):
        m.tokens[0], m.pos[0] = t, len(prompt) + i
        got.append(m.step(1)[0].clone())
    got = torch.stack(got)
    err = float((got - ref_logits).norm() / ref_logits.norm())
    agree = int((ref_logits.argmax(-1).cpu() == tokens[0]).sum())
    same = int((ref_greedy == tokens[0]).cumprod(0).sum())
    name = "dense" if keep is None else f"Q-Sparse keep {keep}"
    dt = str(dtype).removeprefix("torch.")
    return (
        f"decode vs transformers, {layers} layers of shape {s.hidden}/{s.intermediate}, {dt}, {name}: teacher-forced "
        f"logits rel. error {err:.1e}; argmax agrees at {agree}/{steps} steps; greedy "
        f"generate identical for the first {same}/{steps} tokens"
    )


# ---------------------------------------------------------------- section: e2e


def bench_e2e(models, device, dtype, bw, keeps, new_tokens, hf_tokens, log) -> list[dict]:
    from transformers import Qwen2ForCausalLM

    from leanstar.sparse.decode import Decoder
    from leanstar.sparse.decode_model import weight_bytes_per_token

    results = []
    for model_name, s in models:
        config = hf_config(s, s.layers)
        torch.manual_seed(0)
        prev = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            with torch.device(device):
                hf = Qwen2ForCausalLM(config).eval()
        finally:
            torch.set_default_dtype(prev)
        prompt = torch.randint(0, s.vocab, (16,), generator=torch.Generator().manual_seed(2))
        hf_tps = time_hf_generate(hf, prompt.to(device), hf_tokens, device)
        dense = Weights.from_hf(hf, transposed=False, device=device, dtype=dtype)
        del hf
        row = dict(model=model_name, hf_tokens_per_s=hf_tps, hf_tokens=hf_tokens)
        log(f"{model_name} transformers generate (eager, dynamic cache): {hf_tps:.1f} tokens/s")
        variants = [("dense", None)] + [(f"keep {r}", r) for r in keeps]
        sparse_w = None
        for label, ratio in variants:
            if ratio is not None and sparse_w is None:
                sparse_w = dense.with_layout(transposed=True)
                del dense
                dense = None
                torch.cuda.empty_cache() if device.type == "cuda" else None
            w = sparse_w if ratio is not None else dense
            keep = Keep.from_ratios(s, ratio, ratio) if ratio is not None else None
            dec = Decoder(w, keep, max_batch=1, impl="triton")
            for (kind, n), us in dec.tuning.items():
                log(f"{model_name} {label}: batch-1 {kind} site, {n} wide: selection + GEMVs "
                    f"{us[True]:.1f} us with the compacted list, {us[False]:.1f} us masked rows "
                    f"-> {'list' if us[True] < us[False] else 'masked'}")  # fmt: skip
            gen_tps, step_ms, prefill_ms = time_decoder(dec, prompt.tolist(), new_tokens, device)
            floor_ms = weight_bytes_per_token(w, keep) / bw * 1e3
            # the rest of a generate() call: the first sample, the per-step host work, the copy
            host_ms = 1e3 * new_tokens / gen_tps - (new_tokens - 1) * step_ms - prefill_ms
            row[label] = dict(
                tokens_per_s=gen_tps, step_ms=step_ms, floor_ms=floor_ms,
                prefill_ms=prefill_ms, other_ms=host_ms,
                list_vs_masked_us={f"{kind} {n}": us for (kind, n), us in dec.tuning.items()},
            )  # fmt: skip
            log(f"{model_name} {label}: {gen_tps:.1f} tokens/s generate(), {step_ms:.3f} ms/step "
                f"graph replay, bandwidth floor {floor_ms:.3f} ms/step; per generate() call "
                f"{prefill_ms:.1f} ms prefill ({len(prompt)} tokens) + {host_ms:.1f} ms other "
                "host work outside the replays")  # fmt: skip
            del dec
        results.append(row)
        del sparse_w, dense
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return results


def time_hf_generate(hf, prompt, tokens, device) -> float:
    kw = dict(max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)
    with torch.no_grad():
        hf.generate(prompt[None], **{**kw, "max_new_tokens": 4, "min_new_tokens": 4})
        sync(device)
        t0 = time.perf_counter()
        hf.generate(prompt[None], **kw)
        sync(device)
    return tokens / (time.perf_counter() - t0)


def time_decoder(dec, prompt: list[int], new_tokens: int, device, repeats: int = 5):
    """(tokens/s of a whole `generate` call incl. prefill, ms per graph-replayed decode step,
    ms of the prompt's prefill alone): the call's time outside the replays, split. Whole calls
    and prefills are wall-clock timed `repeats` times each and the fastest kept: host noise only
    adds time, and medians of 3 still swung a 16-token prefill between 23 and 68 ms on an H100
    (runs 4 and 5), more than the split it feeds."""
    dec.generate([prompt], 1, new_tokens, "greedy")  # warm-up: compile, tune, capture
    sync(device)

    def wall_ms(fn) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            sync(device)
            times.append(1e3 * (time.perf_counter() - t0))
        return min(times)

    tps = 1e3 * new_tokens / wall_ms(lambda: dec.generate([prompt], 1, new_tokens, "greedy"))
    m = dec.model
    ids = torch.tensor(prompt, device=device)
    prefill_ms = wall_ms(lambda: m.prefill(0, ids))
    if device.type != "cuda":
        return tps, float("nan"), prefill_ms
    graph = dec.graphs[(1, "greedy")]
    m.pos[0] = len(prompt)
    dec.step_idx.zero_()
    steps = new_tokens - 1
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(steps):
        graph.replay()
    end.record()
    sync(device)
    return tps, start.elapsed_time(end) / steps, prefill_ms


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--only",
        default="check,kernels,e2e",
        help="sections, comma-separated: check, kernels, e2e, and profile (not run by default)",
    )
    ap.add_argument("--dry-run", action="store_true", help="tiny shapes on CPU, code paths only")
    ap.add_argument("--out", default=os.environ.get("OUT", "bench/out"))
    ap.add_argument("--models", default="0.5B,7B")
    args = ap.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []

    def log(msg: str) -> None:
        print(msg, flush=True)
        lines.append(msg)
        (out / "results.md").write_text("\n".join(lines) + "\n")

    all_models = {"0.5B": ("Qwen2-0.5B", QWEN2_0_5B), "7B": ("Qwen2-7B", QWEN2_7B)}
    models = [all_models[m] for m in args.models.split(",")]
    batches, densities, new_tokens, hf_tokens = BATCHES, DENSITIES, 128, 64
    if args.dry_run:
        tiny = Shape(512, 64, 176, 2, 4, 2, 16, 1e-6, 1e4, 4096)
        global COMPACT_MAX_WIDTH  # so that the tiny down input takes the wide-input paths
        COMPACT_MAX_WIDTH = decode_model.COMPACT_MAX_WIDTH = 128
        models = [("tiny", tiny)]
        batches, densities, new_tokens, hf_tokens = (1, 4), (1.0, 0.5), 6, 4
    import triton

    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (dry run: no timings)"
    log(f"# Q-Sparse decode benchmark\n\ndevice: {name}; torch {torch.__version__}, "
        f"triton {triton.__version__}; dtype bf16")  # fmt: skip
    bw = copy_bandwidth(device)
    log(f"measured device-to-device copy bandwidth (read + write): {bw / 1e12:.2f} TB/s\n")
    if args.dry_run:
        bw = 1e11
    clock = Clock(device)
    record: dict = dict(device=name, copy_bandwidth=bw)
    sections = args.only.split(",")
    check_shape, check_layers, check_steps = (
        (models[0][1], 2, 4) if args.dry_run else (QWEN2_0_5B, 4, 24)
    )
    # Most wanted first: a run cut short by its time limit keeps what it measured (in $OUT).
    steps = [
        ("check", lambda: check_kernels(models, device, dtype, log)),
        ("kernels", lambda: select_section(models, device, dtype, log, clock)),
        ("e2e", lambda: e2e_section(models, device, dtype, bw, new_tokens, hf_tokens, log, args)),
        (
            "kernels",
            lambda: kernels_section(models, clock, bw, device, dtype, batches, densities, log),
        ),
        (
            "check",
            lambda: check_decode(check_shape, device, dtype, log, check_layers, check_steps),
        ),
        ("profile", lambda: profile_section(models, device, dtype, log, args)),
    ]
    for section, run in steps:
        if section not in sections:
            continue
        t0 = time.perf_counter()
        try:
            record.setdefault(section, []).append(run())
        except Exception:  # a failed section must not cost the others their numbers
            log(f"\n{section} FAILED:\n```\n{traceback.format_exc()}```")
        log(f"({section}: {time.perf_counter() - t0:.0f} s)\n")
        (out / "results.json").write_text(json.dumps(record, indent=1, default=str))


def kernels_section(models, clock, bw, device, dtype, batches, densities, log):
    log("\n## Kernels: dense cuBLAS vs fused sparse linear (select + zero + sparse GEMV)\n")
    log("Selection: the plan tuned in the selection table above for this width and batch")
    log("(the bitwise search warm-started from the previous call where none was tuned; a")
    log("different random row each call); batch 1 uses the tuned GEMV (gather over the compacted")
    log(
        f"list for inputs up to {COMPACT_MAX_WIDTH} wide, as the decoder does; wider inputs both "
        "ways: '(list)' and '(masked)' rows).\n"
    )
    log(kernel_header(densities))
    rows = bench_kernels(models, clock, bw, device, dtype, batches, densities, log)
    if device.type == "cuda":
        for model_name, shape in models:
            for proj, n, m in projections(shape):
                if proj == "down":
                    log(naive_line(model_name, n, m, clock, device, dtype))
    return rows


def select_section(models, device, dtype, log, clock):
    from leanstar.sparse.kernels import MULTI_MIN_WIDTH

    log("## Selection: old bitwise search vs radix select vs multi-program radix select\n")
    log("Median us per call, CUDA-graph replays of 20 calls over 4 fresh random input sets, as")
    log("the decoder calls each site: `select` = the selection alone (o-projection input; every")
    log("width for the kernels table), `add_rmsnorm` / `act_mul` = fused into that op (q/k/v and")
    log("gate/up inputs / down input), warm-start state (used by the search only), compacted")
    log(f"lists at batch 1 for widths up to {COMPACT_MAX_WIDTH} (wider: both ways). Density 0.5.")
    log("search (old) = one program per row, bitwise search warm-started from the previous call;")
    log("radix = one program per row, 2 histogram passes; multi C = C-wide chunks on separate")
    log(f"programs, 3 launches (tried for widths of {MULTI_MIN_WIDTH} and more).")
    log("Every plan is checked equal to the search's output before it is timed; the fastest is")
    log("used from here on (kernels table, end to end).\n")
    return select_lines(models, dtype, log, clock)


def e2e_section(models, device, dtype, bw, new_tokens, hf_tokens, log, args):
    log(f"## End to end: batch 1, 16-token prompt, {new_tokens} new tokens, greedy\n")
    keeps = (0.5,) if args.dry_run else (0.6, 0.5)
    return bench_e2e(models, device, dtype, bw, keeps, new_tokens, hf_tokens, log)


# ---------------------------------------------------------------- section: profile (optional)


def profile_section(models, device, dtype, log, args) -> list[dict]:
    """Where one batch-1 decode step's GPU time goes, kernel by kernel (not in the default run)."""
    from torch.profiler import ProfilerActivity, profile

    from leanstar.sparse.decode import Decoder

    keeps = (None, 0.5)
    gpu = device.type == "cuda"
    log("## Profile: one batch-1 decode step, kernel by kernel\n")
    log("Random-init weights; the step run eagerly under torch.profiler (kernel durations do not")
    log("depend on how they were launched); 'graph step' is the CUDA-graph replay of the same")
    log("step, so graph step - kernel sum = the time between kernels inside the graph.")
    log("On a CPU (dry run) the rows are CPU self time per op instead.\n")
    steps, top = (2, 5) if args.dry_run else (10, 14)
    results = []
    for model_name, s in models:
        for ratio in keeps:
            keep = Keep.from_ratios(s, ratio, ratio) if ratio is not None else None
            w = Weights.random(s, transposed=keep is not None, device=device, dtype=dtype)
            dec = Decoder(w, keep, max_batch=1, impl="triton")
            dec.generate([[1, 2, 3]], 1, 4, "greedy")  # compile, tune, capture
            m = dec.model
            m.pos[0] = 3
            with profile(activities=[ProfilerActivity.CUDA if gpu else ProfilerActivity.CPU]) as p:
                for _ in range(steps):
                    m.step(1)
                sync(device)
            per_kernel: dict[str, list[float]] = {}
            for e in p.events():
                if gpu and e.device_type != torch.autograd.DeviceType.CUDA:
                    continue
                us = e.time_range.elapsed_us() if gpu else e.self_cpu_time_total
                if us > 0:
                    per_kernel.setdefault(e.name, []).append(us)
            total = sum(sum(t) for t in per_kernel.values()) / steps
            graph_us = float("nan")
            if gpu:
                graph = dec.graphs[(1, "greedy")]
                start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
                start.record()
                for _ in range(steps):
                    graph.replay()
                end.record()
                sync(device)
                graph_us = 1e3 * start.elapsed_time(end) / steps
            label = "dense" if ratio is None else f"keep {ratio}"
            launches = sum(len(t) for t in per_kernel.values()) / steps
            if gpu:
                log(f"{model_name} {label}: {launches:.0f} kernels/step, kernel sum {total:.0f} "
                    f"us, graph step {graph_us:.0f} us (between kernels {graph_us - total:.0f} "
                    "us)\n")  # fmt: skip
            else:
                log(f"{model_name} {label}: {launches:.0f} CPU ops/step, {total:.0f} us\n")
            log(
                f"| {'kernel' if gpu else 'op'} | calls/step | us/step | share |\n|---|---|---|---|"
            )
            ranked = sorted(per_kernel.items(), key=lambda kv: -sum(kv[1]))
            for name, times in ranked[:top]:
                log(f"| `{name[:70]}` | {len(times) / steps:.0f} | {sum(times) / steps:.1f} | "
                    f"{sum(times) / steps / total:.1%} |")  # fmt: skip
            rest = sum(sum(t) for _, t in ranked[top:]) / steps
            log(
                f"| (the other {max(0, len(ranked) - top)}) | | {rest:.1f} | {rest / total:.1%} |\n"
            )
            results.append(dict(model=model_name, variant=label, kernel_sum_us=total,
                                graph_step_us=graph_us, launches=launches,
                                kernels={n: sum(t) / steps for n, t in ranked}))  # fmt: skip
            del dec, w, m
            if gpu:
                torch.cuda.empty_cache()
    return results


if __name__ == "__main__":
    sys.exit(main())
