"""The compiled decode path against transformers `generate` on the tiny random Qwen2.

Greedy decoding must give the same tokens as the transformers model, dense and under Q-Sparse
(`apply_qsparse`), both with the PyTorch op twins and with the Triton kernels (under the
interpreter on a CPU). fp32 weights: greedy tokens are then stable under reordered sums, and
magnitudes do not tie, so any exact top-K keeps the same inputs.
"""

from __future__ import annotations

import json
import os

import pytest
import torch

from leanstar.config import GeneratorConfig, SparseConfig
from leanstar.generation.base import SamplingParams, make_generator
from leanstar.sparse.decode import CompiledGenerator, Decoder

PROMPTS = ["theorem foo (n : ℕ) : n + 0 = n := by", "⊢ ∑ k ∈ Finset.range n, k ≤ n ^ 2\n"]
NEW = 8


def _triton_runs() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"


DEV = "cuda" if torch.cuda.is_available() else "cpu"
IMPLS = [
    "torch",
    pytest.param(
        "triton",
        marks=pytest.mark.skipif(not _triton_runs(), reason="needs triton (interpreter on CPU)"),
    ),
]


def _hf(model_dir, sparse: SparseConfig | None, device):
    """The reference: the transformers model, under `apply_qsparse` when sparse, in fp32 on the
    decoder's device (on a GPU, CPU and GPU sums differ enough to flip a near-tied top-K)."""
    from leanstar.sparse.qsparse import load_model

    return load_model(model_dir, sparse, dense=sparse is None, dtype="float32", device=device)


def _fp32(model_dir) -> GeneratorConfig:
    """The compiled generator in fp32 (on a GPU it would default to bf16)."""
    return GeneratorConfig(backend="compiled", model=str(model_dir), dtype="float32")


def _greedy_reference(model, tok, prompt: str) -> list[int]:
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False).input_ids.to(model.device)
    out = model.generate(ids, max_new_tokens=NEW, do_sample=False, pad_token_id=tok.pad_token_id)
    return out[0, ids.shape[1] :].tolist()


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("keep", [None, 0.5])
def test_greedy_tokens_match_transformers(tiny_model_dir, impl, keep):
    sparse = SparseConfig(enabled=True, keep_ratio=keep) if keep else None
    gen = CompiledGenerator(_fp32(tiny_model_dir), sparse=sparse, impl=impl)
    assert (gen.keep is None) == (keep is None)
    hf = _hf(tiny_model_dir, sparse, gen.decoder.device)
    ids = [gen.tokenizer(p, add_special_tokens=False).input_ids for p in PROMPTS]
    want = [_greedy_reference(hf, gen.tokenizer, p) for p in PROMPTS]
    tokens, logps = gen.decoder.generate(ids, 1, NEW, "greedy")  # both prompts in one batch
    assert [row.tolist() for row in tokens] == want
    assert (logps <= 0).all()
    if keep is not None:  # batch 1 takes the compacted-list (gather) GEMV
        alone, _ = gen.decoder.generate(ids[1:], 1, 5, "greedy")
        assert alone[0].tolist() == want[1][:5]


def test_sparsity_changes_the_model(tiny_model_dir):
    """Guard against a test that passes because sparsity never took effect."""
    cfg = GeneratorConfig(backend="compiled", model=str(tiny_model_dir))
    ids = [[5, 9, 200, 17, 33]]
    dense = CompiledGenerator(cfg, impl="torch").decoder
    sparse = CompiledGenerator(cfg, SparseConfig(enabled=True, keep_ratio=0.25), "torch").decoder
    _, lp_dense = dense.generate(ids, 1, 4, "greedy")
    _, lp_sparse = sparse.generate(ids, 1, 4, "greedy")
    assert not torch.allclose(lp_dense, lp_sparse)


def test_relu2_and_separate_keep_ratios_match_transformers(tiny_model_dir):
    sparse = SparseConfig(enabled=True, keep_ratio_attn=0.7, keep_ratio_mlp=0.4, activation="relu2")
    gen = CompiledGenerator(_fp32(tiny_model_dir), sparse=sparse, impl="torch")
    hf = _hf(tiny_model_dir, sparse, gen.decoder.device)
    ids = gen.tokenizer(PROMPTS[0], add_special_tokens=False).input_ids
    tokens, _ = gen.decoder.generate([ids], 1, NEW, "greedy")
    assert tokens[0].tolist() == _greedy_reference(hf, gen.tokenizer, PROMPTS[0])


def test_step_logits_match_prefill(tiny_model_dir):
    """Decoding a prompt token by token gives the logits of prefilling it whole."""
    gen = CompiledGenerator(
        GeneratorConfig(backend="compiled", model=str(tiny_model_dir)),
        SparseConfig(enabled=True, keep_ratio=0.6),
        impl="torch",
    )
    dec: Decoder = gen.decoder
    model = dec._ensure(64)
    ids = torch.tensor([3, 14, 15, 92, 65, 35])
    want = model.prefill(0, ids)
    model.prefill(0, ids[:1])
    for i in range(1, len(ids)):
        model.tokens[0], model.pos[0] = ids[i], i
        got = model.step(1)[0]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_generator_backend_samples(tiny_model_dir):
    cfg = GeneratorConfig(backend="compiled", model=str(tiny_model_dir), batch_size=4)
    gen = make_generator(cfg)
    assert isinstance(gen, CompiledGenerator) and gen.name == "compiled"
    params = SamplingParams(n=3, temperature=1.0, top_p=0.9, max_new_tokens=8, seed=7)
    out = gen.generate(PROMPTS, params)  # 6 rows, max_batch 4: two decoder batches
    assert [len(s) for s in out] == [3, 3]
    for samples in out:
        for s in samples:
            assert 1 <= s.num_tokens <= 8 and s.finish_reason in ("stop", "length")
            assert len(s.token_logprobs) == s.num_tokens
            assert s.logprob == pytest.approx(sum(s.token_logprobs)) and s.logprob <= 0
    again = gen.generate(PROMPTS, params)
    assert [[s.text for s in r] for r in again] == [[s.text for s in r] for r in out]
    greedy = gen.generate(PROMPTS[:1], SamplingParams(n=2, temperature=0.0, max_new_tokens=8))
    assert greedy[0][0].text == greedy[0][1].text
    gen.close()


def test_stop_strings_cut_the_text(tiny_model_dir):
    gen = CompiledGenerator(GeneratorConfig(backend="compiled", model=str(tiny_model_dir)))
    free = gen.generate(PROMPTS[:1], SamplingParams(temperature=0.0, max_new_tokens=12))[0][0]
    assert len(free.text) > 4
    stop = free.text[2:4]
    cut = gen.generate(
        PROMPTS[:1], SamplingParams(temperature=0.0, max_new_tokens=12, stop=(stop,))
    )[0][0]
    assert cut.finish_reason == "stop" and cut.text == free.text[: free.text.find(stop)]


def test_checkpoint_settings_select_the_sparse_path(tiny_model_dir, tmp_path):
    import shutil

    ckpt = tmp_path / "sparse-ckpt"
    shutil.copytree(tiny_model_dir, ckpt)
    config = json.loads((ckpt / "config.json").read_text())
    config["qsparse"] = {"enabled": True, "keep_ratio": 0.5}
    (ckpt / "config.json").write_text(json.dumps(config))
    gen = CompiledGenerator(GeneratorConfig(backend="compiled", model=str(ckpt)), impl="torch")
    assert gen.keep is not None and gen.keep.qkv == 32  # hidden 64 * 0.5
    nm = SparseConfig(enabled=True, pattern="nm")
    with pytest.raises(NotImplementedError, match="pattern 'nm'"):
        CompiledGenerator(GeneratorConfig(backend="compiled", model=str(ckpt)), nm, "torch")


@pytest.mark.skipif(not _triton_runs(), reason="needs triton (interpreter on CPU)")
def test_selection_plans_give_the_same_bf16_decode(monkeypatch):
    """The radix and multi-program selections keep exactly the inputs the bitwise search keeps
    (ties included: bf16 ties often), so a bf16 decode step gives bit-identical logits with any
    plan, at batch 1 (compacted lists) and 2."""
    from leanstar.sparse import kernels as kn
    from leanstar.sparse.decode_model import DecodeModel, Keep, Shape, Weights

    shape = Shape(512, 64, 176, 1, 4, 2, 16, 1e-6, 1e4, 4096)
    weights = Weights.random(shape, transposed=True, device=DEV, dtype=torch.bfloat16)
    keep = Keep.from_ratios(shape, 0.5, 0.5)
    plans = {
        "add_rmsnorm": kn.SelectPlan("multi", num_warps=2, chunk=32),
        "select": kn.SelectPlan("radix"),
        "act_mul": kn.SelectPlan("multi", num_warps=2, chunk=64),
    }
    prompts = [torch.tensor([3, 14, 15, 92], device=DEV), torch.tensor([65, 35, 89], device=DEV)]
    multi_calls = []
    multi = kn._multi_select
    monkeypatch.setattr(
        kn, "_multi_select", lambda *a, **kw: multi_calls.append(1) or multi(*a, **kw)
    )

    def logits(tuned: bool) -> list[torch.Tensor]:
        monkeypatch.setattr(kn, "_PLANS", {})
        for kind, plan in plans.items() if tuned else ():
            # batch-1 steps compact; batch-2 steps and the prefills (3, 4 rows) do not
            for rows, compact in ((1, True), (2, False)):
                n = {"act_mul": 176}.get(kind, 64)
                kn.set_select_plan(kind, rows, n, torch.bfloat16, plan, compact)
        model = DecodeModel(weights, keep, max_batch=2, max_seq=16, impl="triton")
        for row, ids in enumerate(prompts):
            model.prefill(row, ids)
        out = []
        for rows in (1, 2):
            model.tokens[:rows] = torch.tensor([7, 11][:rows])
            out.append(model.step(rows).clone())
            model.pos[:rows] += 1
        return out

    tuned = logits(True)
    # three multi-program sites per layer (1 layer); 2 prefills (which run the step's selection
    # ops over the prompt's tokens) and 2 steps
    assert len(multi_calls) == 3 * (2 + 2)
    for got, want in zip(tuned, logits(False), strict=True):
        assert torch.equal(got, want)
    assert len(multi_calls) == 12  # the untuned decoder runs the bitwise search


@pytest.mark.skipif(not _triton_runs(), reason="needs triton (interpreter on CPU)")
@pytest.mark.parametrize("keep", [None, 0.5])
def test_prefill_runs_the_kernels_and_matches_the_twins(keep, monkeypatch):
    """Prefill goes through the decoder's op set (the Triton selection kernels on a GPU, not
    `torch.topk`), and gives the PyTorch twins' fp16 logits and caches bit for bit (fp16: the
    interpreter truncates bf16 where torch rounds)."""
    from leanstar.sparse import kernels as kn
    from leanstar.sparse.decode_model import DecodeModel, Keep, Shape, Weights

    shape = Shape(512, 64, 176, 2, 4, 2, 16, 1e-6, 1e4, 4096)
    weights = Weights.random(shape, transposed=True, device=DEV, dtype=torch.float16)
    k = Keep.from_ratios(shape, keep, keep) if keep else None
    calls = []
    for name in ("add_rmsnorm_select", "act_mul_select", "select_topk"):
        real = getattr(kn, name)
        monkeypatch.setattr(
            kn, name, lambda *a, _f=real, _n=name, **kw: calls.append(_n) or _f(*a, **kw)
        )
    ids = torch.tensor([3, 14, 15, 92, 65, 35, 89, 79, 32], device=DEV)
    models = {}
    for impl in ("torch", "triton"):
        models[impl] = DecodeModel(weights, k, max_batch=1, max_seq=16, impl=impl)
        models[impl].logits[0] = models[impl].prefill(0, ids)
    per_layer = ["add_rmsnorm_select", "add_rmsnorm_select", "act_mul_select"]
    per_layer += ["select_topk"] if keep else []
    assert sorted(calls) == sorted(per_layer * shape.layers + ["add_rmsnorm_select"])
    want, got = models["torch"], models["triton"]
    assert torch.equal(got.logits, want.logits)
    assert torch.equal(got.k_cache, want.k_cache) and torch.equal(got.v_cache, want.v_cache)


def test_tuning_picks_the_compacted_list_per_wide_site_by_time(monkeypatch):
    """At batch 1 a site wider than COMPACT_MAX_WIDTH is timed with and without the compacted
    list (its selection + the GEMVs reading it) and takes the faster; narrower sites always
    compact; untimed (nan) results keep the default; the decode model follows the choice."""
    from leanstar.sparse import decode_model as dm
    from leanstar.sparse import kernels as kn
    from leanstar.sparse.decode_model import DecodeModel, Keep, Shape, Weights

    monkeypatch.setattr(dm, "COMPACT_MAX_WIDTH", 128)  # the 176-wide down input is "wide"
    shape = Shape(512, 64, 176, 1, 4, 2, 16, 1e-6, 1e4, 4096)
    weights = Weights.random(shape, transposed=True, device="cpu", dtype=torch.float32)
    keep = Keep.from_ratios(shape, 0.5, 0.5)
    calls = []

    def run(select_us, gemv_us):
        monkeypatch.setattr(dm, "_COMPACTS", {})
        calls.clear()

        def select(kind, rows, n, dtype, density, compact, relu2):
            calls.append(("select", kind, rows, n, compact))
            plan = kn.SelectPlan()
            return plan, {plan: select_us[compact]} if select_us[compact] is not None else {}

        def gemv(rows, n, m, dtype, density, gather):
            calls.append(("gemv", rows, n, m, gather))
            return kn.GemvConfig(gather=gather), gemv_us[gather]

        monkeypatch.setattr(kn, "tune_select_site", select)
        monkeypatch.setattr(kn, "tune_gemv", gemv)
        dec = Decoder(weights, keep, max_batch=4, impl="triton", tune=False)
        dec.tune()
        return dec, DecodeModel(weights, keep, max_batch=1, max_seq=8, impl="torch")

    # the list costs 1 us more to select and saves 5 us in the GEMV: it wins
    dec, model = run({True: 9.0, False: 8.0}, {True: 10.0, False: 15.0})
    assert dec.tuning == {("act_mul", 176): {True: 19.0, False: 23.0}}
    assert dm.compacts("act_mul", 176, torch.float32) and "down" in model.compact
    selects = {c[1:] for c in calls if c[0] == "select"}
    assert selects == {
        ("add_rmsnorm", 1, 64, True), ("select", 1, 64, True),  # narrow: always the list
        ("act_mul", 1, 176, False), ("act_mul", 1, 176, True),  # wide: both ways
        ("add_rmsnorm", 4, 64, False), ("select", 4, 64, False), ("act_mul", 4, 176, False),
    }  # fmt: skip
    gemvs = {c[1:] for c in calls if c[0] == "gemv"}
    assert (1, 176, 64, True) in gemvs and (1, 176, 64, False) in gemvs
    assert (1, 64, 352, True) in gemvs and (4, 64, 352, False) in gemvs  # gate/up reads norm

    # the list costs more than it saves: masked rows
    dec, model = run({True: 20.0, False: 8.0}, {True: 10.0, False: 15.0})
    assert not dm.compacts("act_mul", 176, torch.float32) and "down" not in model.compact
    assert {"qkv", "o", "gate_up"} <= set(model.compact)

    # a site set by hand, not timed (nan): no decision, the default (wider: no list)
    dec, model = run({True: None, False: 8.0}, {True: 10.0, False: 15.0})
    assert dec.tuning == {} and "down" not in model.compact


@pytest.mark.parametrize("keep", [None, 0.5])
def test_torch_step_never_waits_on_the_device(keep, monkeypatch):
    """A CUDA graph cannot capture a step whose host reads a device value (`int(pos)`,
    `nonzero()`, `if mask.any()`): the PyTorch twins' step runs on "meta" tensors, which have no
    values to read, as a graph capture would run it (run on an H100, the old twins failed)."""
    import dataclasses

    from leanstar.sparse import topk
    from leanstar.sparse.decode_model import DecodeModel, Keep, Shape, Weights

    def to_meta(obj):
        def move(v):
            if isinstance(v, torch.Tensor):
                return v.to("meta")
            return [to_meta(x) for x in v] if isinstance(v, list) else v

        return dataclasses.replace(
            obj, **{f.name: move(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        )

    monkeypatch.setattr(topk, "_capturing", lambda x: True)
    shape = Shape(512, 64, 176, 2, 4, 2, 16, 1e-6, 1e4, 4096)
    weights = Weights.random(shape, transposed=keep is not None, device="cpu", dtype=torch.float16)
    k = Keep.from_ratios(shape, keep, keep) if keep else None
    model = DecodeModel(to_meta(weights), k, max_batch=2, max_seq=16, impl="torch")
    for rows in (1, 2):  # batch 1 also writes the compacted kept-input lists
        assert model.step(rows).device.type == "meta"
