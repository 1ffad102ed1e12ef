"""Q-Sparse model patching on tiny random Qwen2 / Llama models: golden forward, training, reload."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from leanstar.config import ConfigError, SparseConfig
from leanstar.sparse.qsparse import (
    apply_qsparse,
    find_blocks,
    load_model,
    qsparse_settings,
    remove_qsparse,
)
from leanstar.sparse.topk import keep_count, topk_ste

SHAPE = dict(
    vocab_size=128,
    hidden_size=64,
    intermediate_size=160,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
)


def qwen2(seed: int = 0, **shape):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    return Qwen2ForCausalLM(Qwen2Config(**{**SHAPE, **shape})).eval()


def sparse(keep: float = 0.5, **kw) -> SparseConfig:
    return SparseConfig(enabled=True, keep_ratio=keep, **kw)


IDS = torch.arange(2 * 12).reshape(2, 12) % 128


@torch.no_grad()
def test_keep_ratio_one_reproduces_dense_logits_exactly():
    model = qwen2()
    dense = model(IDS).logits
    apply_qsparse(model, sparse(1.0))
    assert torch.equal(model(IDS).logits, dense)
    apply_qsparse(model, sparse(0.5))
    assert not torch.allclose(model(IDS).logits, dense)


def record_inputs(model):
    """Every Linear's input on the next forward, by module name."""
    seen, handles = {}, []
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear):
            hook = lambda m, args, name=name: seen.__setitem__(name, args[0].detach())  # noqa: E731
            handles.append(mod.register_forward_pre_hook(hook))
    return seen, handles


@torch.no_grad()
def test_each_projection_sees_exactly_k_inputs_and_shared_masks():
    model = apply_qsparse(qwen2(), sparse(0.5, keep_ratio_mlp=0.25))
    seen, _ = record_inputs(model)
    model(IDS)
    for i in range(2):
        p = f"model.layers.{i}"
        q, k, v = (seen[f"{p}.self_attn.{n}_proj"] for n in "qkv")
        assert torch.equal(q, k) and torch.equal(q, v)  # one shared mask (and input)
        assert torch.equal(seen[f"{p}.mlp.gate_proj"], seen[f"{p}.mlp.up_proj"])
        for name, k_expected in [
            ("self_attn.q_proj", keep_count(64, 0.5)),
            ("self_attn.o_proj", keep_count(64, 0.5)),
            ("mlp.gate_proj", keep_count(64, 0.25)),
            ("mlp.down_proj", keep_count(160, 0.25)),
        ]:
            assert ((seen[f"{p}.{name}"] != 0).sum(-1) == k_expected).all(), name
    assert (seen["lm_head"] != 0).float().mean() > 0.99  # lm_head stays dense


@torch.no_grad()
def test_golden_layer_forward_matches_hand_written_reference():
    """Layer 0's MLP and attention projections computed by hand from the weights."""
    model = apply_qsparse(qwen2(seed=1), sparse(0.5))
    layer = model.model.layers[0]
    torch.manual_seed(4)
    h = torch.randn(2, 5, 64)
    m = layer.mlp
    xs = topk_ste(h, 32)
    mid = F.silu(xs @ m.gate_proj.weight.T) * (xs @ m.up_proj.weight.T)
    expected = topk_ste(mid, 80) @ m.down_proj.weight.T
    assert torch.allclose(layer.mlp(h), expected, atol=1e-6)

    # o_proj under its hook, and q/k/v inputs: what the attention module computes from h.
    a = layer.self_attn
    assert torch.allclose(a.o_proj(h), topk_ste(h, 32) @ a.o_proj.weight.T, atol=1e-6)
    seen, handles = record_inputs(layer)
    cos = torch.ones(2, 5, 16)
    a(hidden_states=h, position_embeddings=(cos, torch.zeros(2, 5, 16)), attention_mask=None)
    assert torch.equal(seen["self_attn.q_proj"], topk_ste(h, 32))
    for handle in handles:
        handle.remove()


def test_patched_model_trains_loss_falls_and_grads_reach_bottom_layer():
    model = apply_qsparse(qwen2(seed=2), sparse(0.5)).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    ids = torch.randint(0, 128, (4, 16), generator=torch.Generator().manual_seed(0))
    losses = []
    for _ in range(8):
        loss = model(ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        bottom = model.model.layers[0].self_attn.q_proj.weight.grad
        assert bottom is not None and bottom.abs().sum() > 0
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1, losses


@torch.no_grad()
def test_save_and_reload_keeps_sparsity(tmp_path):
    model = apply_qsparse(qwen2(seed=3), sparse(0.6, keep_ratio_attn=0.7))
    out = model(IDS).logits
    model.save_pretrained(tmp_path / "ckpt")
    saved = json.loads((tmp_path / "ckpt" / "config.json").read_text())["qsparse"]
    assert saved["enabled"] and saved["keep_ratio"] == 0.6 and saved["keep_ratio_attn"] == 0.7

    again = load_model(tmp_path / "ckpt")
    assert qsparse_settings(again) == sparse(0.6, keep_ratio_attn=0.7)
    assert torch.equal(again(IDS).logits, out)
    dense = load_model(tmp_path / "ckpt", dense=True)
    assert qsparse_settings(dense) is None
    assert torch.equal(dense(IDS).logits, remove_qsparse(model)(IDS).logits)
    # A settings override wins over the checkpoint's own.
    other = load_model(tmp_path / "ckpt", sparse(1.0))
    assert torch.equal(other(IDS).logits, dense(IDS).logits)


@torch.no_grad()
def test_load_model_makes_a_dense_checkpoint_sparse(tmp_path):
    qwen2(seed=4).save_pretrained(tmp_path / "dense")
    assert qsparse_settings(load_model(tmp_path / "dense")) is None
    assert qsparse_settings(load_model(tmp_path / "dense", SparseConfig())) is None
    model = load_model(tmp_path / "dense", sparse(0.5))
    assert model.config.qsparse["keep_ratio"] == 0.5


@torch.no_grad()
def test_reapply_replaces_and_disabled_removes():
    model = qwen2(seed=5)
    dense = model(IDS).logits
    apply_qsparse(model, sparse(0.3))
    apply_qsparse(model, sparse(0.5))
    assert len(model.model.layers[0].self_attn._forward_pre_hooks) == 1
    assert model.model.layers[0].mlp.down_proj.qsparse.keep_ratio == 0.5
    apply_qsparse(model, SparseConfig(enabled=False))
    assert torch.equal(model(IDS).logits, dense)
    assert not hasattr(model.config, "qsparse")


@torch.no_grad()
def test_relu2_activation_and_its_removal():
    model = qwen2(seed=6)
    dense = model(IDS).logits
    apply_qsparse(model, sparse(1.0, activation="relu2"))
    h = torch.randn(3, 64)
    m = model.model.layers[1].mlp
    expected = (
        F.relu(h @ m.gate_proj.weight.T) ** 2 * (h @ m.up_proj.weight.T)
    ) @ m.down_proj.weight.T
    assert torch.allclose(m(h), expected, atol=1e-5)
    remove_qsparse(model)
    assert torch.equal(model(IDS).logits, dense)


@torch.no_grad()
def test_nm_pattern_in_model_and_bad_dims():
    model = apply_qsparse(
        qwen2(seed=7, intermediate_size=128), sparse(pattern="nm", nm_n=2, nm_m=4)
    )
    seen, _ = record_inputs(model)
    model(IDS)
    down = seen["model.layers.0.mlp.down_proj"].reshape(2, 12, 32, 4)
    assert ((down != 0).sum(-1) == 2).all()
    with pytest.raises(ConfigError, match="divisible"):
        apply_qsparse(qwen2(), sparse(pattern="nm", nm_n=16, nm_m=64))  # 160 % 64 != 0


def test_bad_settings_and_models_are_errors():
    with pytest.raises(ConfigError, match="keep_ratio_mlp"):
        apply_qsparse(qwen2(), sparse(0.5, keep_ratio_mlp=0.0))
    with pytest.raises(ValueError, match="Qwen2 / Llama-style"):
        apply_qsparse(torch.nn.Linear(4, 4), sparse())
    model = qwen2()
    model.config.qsparse = {"enabled": True, "keep_ratoi": 0.5}
    with pytest.raises(ConfigError, match="keep_ratoi"):
        qsparse_settings(model, where="ckpt/config.json")


@torch.no_grad()
def test_llama_style_model_and_bf16():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(8)
    model = LlamaForCausalLM(LlamaConfig(**SHAPE)).eval().to(torch.bfloat16)
    assert len(find_blocks(model)) == 2
    apply_qsparse(model, sparse(0.5))
    seen, _ = record_inputs(model)
    logits = model(IDS).logits
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()
    assert ((seen["model.layers.1.mlp.down_proj"] != 0).sum(-1) == 80).all()


@torch.no_grad()
def test_generate_runs_under_qsparse():
    model = apply_qsparse(qwen2(seed=9), sparse(0.5))
    out = model.generate(IDS[:1, :4], max_new_tokens=5, do_sample=False, pad_token_id=0)
    assert out.shape == (1, 9)


def test_gradient_checkpointing_gives_the_same_gradients():
    ids = IDS[:, :8]
    grads = []
    for checkpointing in (False, True):
        model = apply_qsparse(qwen2(seed=10), sparse(0.5)).train()
        if checkpointing:
            # transformers 5.24 renamed it; older versions only have the first name
            enable = getattr(model, "activation_checkpointing_enable", None)
            (enable or model.gradient_checkpointing_enable)()
        model(ids, labels=ids).loss.backward()
        grads.append(model.model.layers[0].mlp.gate_proj.weight.grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


@torch.no_grad()
def test_peft_lora_branches_see_sparse_inputs():
    peft = pytest.importorskip("peft")
    model = peft.get_peft_model(
        qwen2(seed=11), peft.LoraConfig(r=4, target_modules=["q_proj", "o_proj", "down_proj"])
    )
    apply_qsparse(model, sparse(0.5))
    seen = {}
    lora_a = model.base_model.model.model.layers[0].self_attn.o_proj.lora_A["default"]
    lora_a.register_forward_pre_hook(lambda m, args: seen.__setitem__("o", args[0]))
    model(IDS)
    assert ((seen["o"] != 0).sum(-1) == 32).all()
    assert model.base_model.model.config.qsparse["keep_ratio"] == 0.5


@torch.no_grad()
def test_deep_copy_of_a_patched_model_is_independent():
    import copy

    model = apply_qsparse(qwen2(seed=12), sparse(0.5))
    out = model(IDS).logits
    twin = remove_qsparse(copy.deepcopy(model))
    assert torch.equal(model(IDS).logits, out)  # the original keeps its sparsity
    apply_qsparse(model, SparseConfig(enabled=False))
    assert torch.equal(twin(IDS).logits, model(IDS).logits)
