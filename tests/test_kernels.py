"""The Triton decode kernels against their PyTorch twins and float64 math.

On a CPU the kernels run under Triton's interpreter (`TRITON_INTERPRET=1`, set by conftest.py
before triton is first imported); on a GPU the same tests compile them. Every check draws fresh random
inputs. The interpreter rounds fp32 -> bf16 by truncation where GPUs round to nearest, so the
fused kernels are compared exactly in fp16 and fp32 and within a tolerance in bf16.
"""

from __future__ import annotations

import os

import pytest
import torch

pytest.importorskip("triton", reason="the decode kernels need triton (`pip install triton`)")
if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip(
        "no GPU and TRITON_INTERPRET is not 1 (tests/conftest.py sets it)", allow_module_level=True
    )

from leanstar.sparse import attention_kernels as ak  # noqa: E402
from leanstar.sparse import kernels as kn  # noqa: E402
from leanstar.sparse import torch_ops as ref  # noqa: E402

DEV = "cuda" if torch.cuda.is_available() else "cpu"
HALF = (torch.bfloat16, torch.float16)


def rel_err(out: torch.Tensor, want: torch.Tensor) -> float:
    return float((out.double() - want.double()).norm() / want.double().norm())


def test_kept_features_follows_the_qsparse_rule():
    assert ref.kept_features(0.5, 896) == 448
    assert ref.kept_features(0.6, 4864) == 2918
    assert ref.kept_features(0.29, 100) == 29  # 0.29 * 100 = 28.999999999999996
    assert ref.kept_features(1e-9, 10) == 1 and ref.kept_features(1.0, 10) == 10
    from leanstar.sparse import topk

    for ratio in (0.25, 0.4, 0.5, 0.6, 0.7, 0.29):
        for n in (64, 176, 896, 4864, 18944):
            assert ref.kept_features(ratio, n) == topk.keep_count(n, ratio)


@pytest.mark.parametrize("dtype", [*HALF, torch.float32])
@pytest.mark.parametrize("rows", [1, 5, 16])
def test_select_topk_is_exact(dtype, rows):
    n = 300
    for k in (1, 150, n):
        x = torch.randn(rows, n, device=DEV, dtype=dtype)
        got = kn.select_topk(x, k)
        assert torch.equal(got, ref.select_topk(x, k))
        kept = got != 0
        assert (kept.sum(1) == k).all()
        mag = x.abs().float()
        lowest_kept = mag.masked_fill(~kept, float("inf")).min(1).values
        highest_dropped = mag.masked_fill(kept, -1.0).max(1).values
        assert (lowest_kept >= highest_dropped).all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_warm_started_selection_is_exact_and_compacts(dtype):
    """The search started from each row's previous threshold gives the same selection for
    any state: a fitting one (same distribution again), a stale one (a scaled distribution),
    zeros. The compacted (index, value) lists hold the kept entries in index order."""
    rows, n, k = 3, 500, 200
    state = torch.zeros(rows, device=DEV, dtype=torch.int32)
    idx = torch.full((rows, k), -1, device=DEV, dtype=torch.int32)
    val = torch.empty(rows, k, device=DEV, dtype=dtype)
    for scale in (1.0, 1.0, 1.05, 30.0, 1e-3, 1e-3):
        x = scale * torch.randn(rows, n, device=DEV, dtype=dtype)
        got = kn.select_topk(x, k, state=state, compact=(idx, val))
        assert torch.equal(got, ref.select_topk(x, k))
        cols = (got != 0).nonzero()[:, 1].view(rows, k)
        assert torch.equal(idx.long(), cols) and torch.equal(val, x.gather(1, cols))
    assert (state > 0).all()


def test_select_topk_breaks_ties_by_lowest_index():
    x = torch.tensor([[1.0, -2.0, 2.0, 1.0, -1.0, 2.0, 0.5, -1.0]], device=DEV)
    got = kn.select_topk(x.to(torch.bfloat16), 4).float()
    # Three 2s are kept, and of the four 1s only the first (index 0).
    assert got.tolist() == [[1.0, -2.0, 2.0, 0.0, 0.0, 2.0, 0.0, 0.0]]
    many = torch.randint(-3, 4, (3, 1000), device=DEV).to(torch.float16)
    assert torch.equal(kn.select_topk(many, 333), ref.select_topk(many, 333))


# Selection plans other than the default bitwise search: radix select in one program, and the
# multi-program radix select with several chunks per row (64 wide: 5 chunks for n=300) or one.
PLANS = [
    kn.SelectPlan("radix"),
    kn.SelectPlan("multi", num_warps=2, chunk=64),
    kn.SelectPlan("multi", num_warps=4, chunk=512),
]


@pytest.mark.parametrize("dtype", [*HALF, torch.float32])
@pytest.mark.parametrize("plan", PLANS, ids=str)
def test_radix_and_multi_program_selection_are_exact(dtype, plan, monkeypatch):
    """Same output and same compacted lists as the reference, for any K, with many ties (small
    integers) and without, including rows where the threshold sits in the last chunk."""
    if plan.method == "multi" and dtype == torch.float32:  # 16-bit only: falls back
        monkeypatch.setattr(kn, "_PLANS", {})
        kn.set_select_plan("select", 1, 300, dtype, plan)
        assert kn.select_plan("select", 1, 300, dtype) == kn.SelectPlan()
        return
    n = 300
    for rows, k, ties in (
        (1, 1, False),
        (3, 150, False),
        (3, 150, True),
        (2, 299, True),
        (1, n, 0),
    ):
        x = torch.randn(rows, n, device=DEV, dtype=dtype)
        if ties:
            x = torch.randint(-3, 4, (rows, n), device=DEV).to(dtype)
            x[:, -7:] = 100.0  # the largest entries last
        idx = torch.full((rows, k), -1, device=DEV, dtype=torch.int32)
        val = torch.empty(rows, k, device=DEV, dtype=dtype)
        got = kn.select_topk(x, k, compact=(idx, val), plan=plan)
        assert torch.equal(got, ref.select_topk(x, k)), (rows, k, ties)
        cols = ref.topk_mask(x, k).nonzero()[:, 1].view(rows, k)  # (x may hold zeros)
        assert torch.equal(idx.long(), cols) and torch.equal(val, x.gather(1, cols))


def test_tuning_drops_a_failing_plan_and_keeps_the_fastest(monkeypatch):
    """`tune_select_site` checks each candidate against the bitwise search before timing it;
    one that does not compile is dropped (and printed), the fastest of the rest is kept, for
    calls that compact only (a call without the list is another site), with its time."""
    monkeypatch.setattr(kn, "_PLANS", {})
    monkeypatch.setattr(kn, "_PLAN_US", {})
    broken = kn.SelectPlan("multi", num_warps=2, chunk=100)  # not a power of 2: cannot build
    good = kn.SelectPlan("multi", num_warps=2, chunk=64)
    plans = [kn.SelectPlan(), kn.SelectPlan("radix"), good, broken]
    monkeypatch.setattr(kn, "select_candidates", lambda n, dtype: plans)

    for kind in kn.KINDS:
        fake_us = iter([9.0, 7.0, 5.0])  # the broken plan never reaches the timer

        def timer(fn, fake_us=fake_us):
            fn(0)
            fn(1)
            return next(fake_us)

        best, times = kn.tune_select_site(
            kind, 1, 200, torch.bfloat16, compact=True, device=DEV, timer=timer
        )
        assert best == good and broken not in times and len(times) == 3
        assert kn.select_plan(kind, 1, 200, torch.bfloat16, compact=True) == good
        assert kn.select_plan(kind, 1, 200, torch.bfloat16) == kn.SelectPlan()
        again = kn.tune_select_site(kind, 1, 200, torch.bfloat16, compact=True, device=DEV)
        assert again == (good, {good: 5.0})


def test_gemv_tiles_are_tuned_per_call_kind(monkeypatch):
    """A batch-1 GEMV handed the compacted list may pick a gather tile; one without the list is
    tuned over the masked tiles alone and remembered apart (run 3 ran the 7B down projection's
    masked GEMV with a tile tuned for the gather kernel)."""
    monkeypatch.setattr(kn, "_TUNED", {})
    monkeypatch.setattr(kn, "_TUNED_US", {})
    n, m, dtype = 96, 64, torch.float16
    for gather in (True, False):
        tiles = kn.candidates(1, gather)
        assert any(c.gather for c in tiles) is gather
        fake_us = iter(float(len(tiles) - i) for i in range(len(tiles)))  # the last is fastest

        def timer(fn, fake_us=fake_us):
            fn(0)
            return next(fake_us)

        best, us = kn.tune_gemv(1, n, m, dtype, gather=gather, device=DEV, timer=timer)
        assert best == tiles[-1] and best.gather is gather and us == 1.0
    assert kn.gemv_config(1, n, m, dtype, gather=True).gather
    assert not kn.gemv_config(1, n, m, dtype).gather
    assert kn.tune_gemv(1, n, m, dtype, gather=True, device=DEV) == (
        kn.candidates(1, True)[-1],
        1.0,
    )


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("rows", [1, 2, 4, 16, 19])
def test_sparse_gemv_matches_float64(dtype, rows):
    n, m = 320, 192
    x = kn.select_topk(torch.randn(rows, n, device=DEV, dtype=dtype), 96)
    wt = torch.randn(n, m, device=DEV, dtype=dtype)
    out = torch.full((rows, m), float("nan"), device=DEV)  # poison: every output must be written
    out.zero_()
    cfg = kn.GemvConfig(bm=64, bk=32, programs=12)
    kn.sparse_gemv(x, wt, out, config=cfg)
    want = x.double() @ wt.double()
    err = rel_err(out, want)
    assert err < 1e-5, f"relative error {err:.2e}"


@pytest.mark.parametrize("dtype", [*HALF, torch.float32])
def test_gather_gemv_matches_float64(dtype):
    n, m, k = 320, 192, 100
    idx = torch.empty(1, k, device=DEV, dtype=torch.int32)
    val = torch.empty(1, k, device=DEV, dtype=dtype)
    x = kn.select_topk(torch.randn(1, n, device=DEV, dtype=dtype), k, compact=(idx, val))
    wt = torch.randn(n, m, device=DEV, dtype=dtype)
    wt[(x == 0)[0]] = float("nan")  # the gather must touch only the kept rows
    out = torch.zeros(1, m, device=DEV)
    cfg = kn.GemvConfig(bm=64, bk=32, programs=9, gather=True)
    kn.sparse_gemv(x, wt, out, config=cfg, compact=(idx, val))
    wt[(x == 0)[0]] = 0.0
    err = rel_err(out, x.double() @ wt.double())
    assert err < 1e-5, f"relative error {err:.2e}"


@pytest.mark.parametrize("rows", [1, 3, 16])
def test_sparse_gemv_never_reads_the_rows_of_dropped_inputs(rows):
    n, m = 256, 128
    x = torch.randn(rows, n, device=DEV, dtype=torch.bfloat16)
    x[:, ::37] = 0  # inputs no row keeps, whatever the draw (16 random rows may cover all 256)
    x = kn.select_topk(x, 64)
    wt = torch.randn(n, m, device=DEV, dtype=torch.bfloat16)
    unused = (x == 0).all(0)
    assert unused.any()
    wt[unused] = float("nan")  # a read of any of these rows would poison the sum
    out = torch.zeros(rows, m, device=DEV)
    kn.sparse_gemv(x, wt, out, config=kn.GemvConfig(bm=64, bk=32, programs=8))
    assert torch.isfinite(out).all()
    wt[unused] = 0.0
    assert rel_err(out, x.double() @ wt.double()) < 1e-5


def test_sparse_linear_matches_the_qsparse_reference():
    """`TopK(x) @ W.T + b` against Q-Sparse's own top-K (`leanstar.sparse.topk.topk_ste`).
    fp32 inputs (no magnitude ties), so any exact top-K picks the same entries."""
    from leanstar.sparse.topk import topk_ste as reference_topk

    for rows in (1, 4, 16):
        x = torch.randn(rows, 448, device=DEV)
        w = torch.randn(200, 448, device=DEV)
        b = torch.randn(200, device=DEV)
        k = ref.kept_features(0.5, 448)
        got = kn.sparse_linear(x, w.t().contiguous(), k, bias=b)
        want = torch.nn.functional.linear(reference_topk(x, k).double(), w.double(), b.double())
        err = rel_err(got, want)
        assert err < 1e-6, f"rows={rows}: relative error {err:.2e}"


def _check_fused(dense_got, dense_want, selected, k, dtype):
    """The kernel's unselected output matches the twin: in fp32 to rounding, in fp16 within one
    ulp (RMSNorm's fp32 sum of squares runs in another order than torch's mean, which moves
    about 1 element in 300 by one ulp), in bf16 within bf16 rounding (the interpreter truncates
    where torch rounds). Its selected output is an exact top-K of its own unselected output
    (ties: lowest index)."""
    if dtype == torch.bfloat16:
        err = rel_err(dense_got, dense_want)
        assert err < 3e-2, f"relative error {err:.2e}"  # truncation: up to 2^-7 per rounding
    elif dtype == torch.float16:
        ulps = (dense_got.view(torch.int16).int() - dense_want.view(torch.int16).int()).abs()
        assert (torch.sign(dense_got) == torch.sign(dense_want)).all() and ulps.max() <= 1
    else:
        torch.testing.assert_close(dense_got, dense_want, rtol=2e-6, atol=1e-6)
    assert torch.equal(selected, ref.select_topk(dense_got, k))


@pytest.mark.parametrize("dtype", [*HALF, torch.float32])
@pytest.mark.parametrize("plan", [kn.SelectPlan(), *PLANS[:2]], ids=str)
def test_add_rmsnorm_select(dtype, plan):
    if dtype == torch.float32 and plan.method != "search":
        pytest.skip("fp32 radix: covered by the exactness test; multi: bf16/fp16 only")
    rows, n, k = 3, 200, 70
    h = torch.randn(rows, n, device=DEV, dtype=dtype)
    delta = torch.randn(rows, n, device=DEV)  # an fp32 accumulator, as the sparse GEMV leaves it
    w = 1 + 0.1 * torch.randn(n, device=DEV, dtype=dtype)
    h_kernel, h_twin, h_again = h.clone(), h.clone(), h.clone()
    normed, want, selected = (torch.empty_like(h) for _ in range(3))
    kn.add_rmsnorm_select(h_kernel, delta, w, 1e-6, None, normed)
    ref.add_rmsnorm_select(h_twin, delta, w, 1e-6, None, want)
    state = torch.zeros(rows, device=DEV, dtype=torch.int32)
    kn.add_rmsnorm_select(h_again, delta, w, 1e-6, k, selected, state=state, plan=plan)
    assert torch.equal(h_kernel, h_again)  # the residual add, written in place
    if dtype != torch.bfloat16:
        assert torch.equal(h_kernel, h_twin)
    _check_fused(normed, want, selected, k, dtype)
    assert ((selected != 0).sum(1) == k).all()


@pytest.mark.parametrize("dtype", [*HALF, torch.float32])
@pytest.mark.parametrize("relu2", [False, True])
@pytest.mark.parametrize("plan", [kn.SelectPlan(), *PLANS[:2]], ids=str)
def test_act_mul_select(dtype, relu2, plan, monkeypatch):
    if dtype == torch.float32 and plan.method != "search":
        pytest.skip("fp32 radix: covered by the exactness test; multi: bf16/fp16 only")
    rows, n, k = 4, 176, 88
    monkeypatch.setattr(kn, "ACT_MUL_CHUNK", 64)  # without a selection: 3 programs per row
    gate_up = torch.randn(rows, 2 * n, device=DEV)
    act, want, selected = (torch.empty(rows, n, device=DEV, dtype=dtype) for _ in range(3))
    kn.act_mul_select(gate_up, None, act, relu2=relu2)
    ref.act_mul_select(gate_up, None, want, relu2=relu2)
    idx = torch.empty(rows, k, device=DEV, dtype=torch.int32)
    val = torch.empty(rows, k, device=DEV, dtype=dtype)
    kn.act_mul_select(gate_up, k, selected, relu2=relu2, compact=(idx, val), plan=plan)
    _check_fused(act, want, selected, k, dtype)
    assert torch.equal(val, selected.gather(1, idx.long()))


def _rope_tables(s, d, dtype):
    inv = 1.0 / (10000 ** (torch.arange(0, d, 2).float() / d))
    ang = torch.arange(s).float()[:, None] * inv[None]
    return ang.cos().to(dtype).float().to(DEV), ang.sin().to(dtype).float().to(DEV)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_rope_cache_and_attention(dtype):
    b, hq, hkv, d, s = 3, 4, 2, 16, 300
    qkv = torch.randn(b, (hq + 2 * hkv) * d, device=DEV)
    bias = torch.randn((hq + 2 * hkv) * d, device=DEV, dtype=dtype)
    cos, sin = _rope_tables(s, d, dtype)
    pos = torch.tensor([0, 37, 299], device=DEV, dtype=torch.int32)
    kc = torch.randn(b, hkv, s, d, device=DEV, dtype=dtype)
    vc = torch.randn_like(kc)
    kc2, vc2 = kc.clone(), vc.clone()
    q1 = torch.empty(b, hq, d, device=DEV, dtype=dtype)
    q2 = torch.empty_like(q1)
    ak.rope_qkv_cache(qkv, bias, cos, sin, pos, q1, kc, vc)
    ref.rope_qkv_cache(qkv, bias, cos, sin, pos, q2, kc2, vc2)
    for got, want in ((q1, q2), (kc, kc2), (vc, vc2)):
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3)
    out1 = torch.empty(b, hq * d, device=DEV, dtype=dtype)
    out2 = torch.empty_like(out1)
    ak.decode_attention(q1, kc, vc, pos, out1)
    ref.decode_attention(q1, kc, vc, pos, out2)
    err = rel_err(out1, out2)
    assert err < (2e-3 if dtype == torch.float16 else 1e-5), f"relative error {err:.2e}"
