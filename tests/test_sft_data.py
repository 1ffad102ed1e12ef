"""SFT data and config: reading, mixing, counting by max_length, the completion mask, configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from leanstar.config import ConfigError, load_config
from leanstar.prompting import prover_prompt, prover_target
from leanstar.train.config import SFTConfig
from leanstar.train.data import (
    LEANDOJO,
    THOUGHTS,
    DataError,
    build_dataset,
    load_examples,
    render,
    tokenize,
)
from tests.test_sft_fixtures import (
    LEANDOJO_SAMPLE,
    bundled_steps,
    thought_records,
    write_thought_records,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def plain_tokenizer(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.chat_template = None
    return tok


@pytest.fixture
def thoughts(tmp_path):
    return write_thought_records(tmp_path / "thoughts.jsonl")


def test_thought_and_tactic_examples(thoughts):
    records = thought_records()
    examples, sources = load_examples([str(thoughts)], [], "thought", seed=0)
    assert [s.kind for s in sources] == [THOUGHTS]
    assert [e.target for e in examples] == [prover_target(r.tactic, r.thought) for r in records]
    assert all(e.with_thought for e in examples)

    # The baseline on the same states drops the thoughts; LeanDojo files give the same pairs.
    examples, _ = load_examples([str(thoughts)], [], "tactic", seed=0)
    assert [e.target for e in examples] == [prover_target(r.tactic) for r in records]
    dojo, sources = load_examples([LEANDOJO_SAMPLE], [], "tactic", seed=0)
    assert sources[0].kind == LEANDOJO
    assert [(e.state, e.target) for e in dojo] == [(e.state, e.target) for e in examples]


def test_mixture_weights(thoughts, tmp_path):
    n = len(bundled_steps())
    few = write_thought_records(tmp_path / "few.jsonl", limit=10)
    examples, sources = load_examples([str(thoughts), str(few)], [2.5, 0.5], "thought", seed=3)
    assert [s.examples for s in sources] == [2 * n + n // 2, 5]
    assert len(examples) == 2 * n + n // 2 + 5
    again, _ = load_examples([str(thoughts), str(few)], [2.5, 0.5], "thought", seed=3)
    assert again == examples  # seeded: every process of a launch builds the same mixture
    other, _ = load_examples([str(thoughts), str(few)], [2.5, 0.5], "thought", seed=4)
    assert other != examples
    none, sources = load_examples([str(thoughts), str(few)], [1.0, 0.0], "thought", seed=0)
    assert [s.examples for s in sources] == [n, 0]


def test_bad_inputs_name_file_and_line(tmp_path, thoughts):
    with pytest.raises(DataError, match="LeanDojo traced steps have no thoughts"):
        load_examples([LEANDOJO_SAMPLE], [], "thought", seed=0)
    bad = tmp_path / "bad.jsonl"
    lines = thoughts.read_text().splitlines()
    record = json.loads(lines[1])
    record["tactic"] = "  "
    bad.write_text("\n".join([lines[0], json.dumps(record), *lines[2:]]) + "\n")
    with pytest.raises(DataError, match=r"bad\.jsonl:2: field 'tactic' is empty"):
        load_examples([str(bad)], [], "thought", seed=0)
    record = json.loads(lines[0]) | {"schema": "trajectory/1"}
    bad.write_text(json.dumps(record) + "\n")
    with pytest.raises(DataError, match=r"bad\.jsonl:1: record is a 'trajectory'"):
        load_examples([str(bad)], [], "thought", seed=0)
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    with pytest.raises(DataError, match=r"notes\.txt: neither thought records"):
        load_examples([str(text)], [], "thought", seed=0)
    with pytest.raises(DataError, match="not found"):
        load_examples([str(tmp_path / "missing.jsonl")], [], "thought", seed=0)


def test_completion_mask_token_by_token(tokenizer, thoughts, tmp_path):
    """One real example through our tokenisation and TRL's labels: the prompt is masked, the
    completion (thought, tactic block, end of turn) is not, token for token."""
    from trl import SFTTrainer

    from leanstar.train.sft import training_args

    dataset, _ = build_dataset([str(thoughts)], tokenizer, fmt="thought", max_length=2048)
    model = _tiny_model(tokenizer)
    cfg = SFTConfig(run_dir=str(tmp_path), global_batch_size=4, max_length=2048)
    trl_args = training_args(cfg, str(tmp_path / "checkpoints"))
    trainer = SFTTrainer(model, args=trl_args, train_dataset=dataset, processing_class=tokenizer)
    record = thought_records()[0]
    row = trainer.train_dataset[0]
    ids, labels = row["input_ids"], row["labels"]

    prompt_ids = tokenizer(prover_prompt(record.state, True, tokenizer), add_special_tokens=False)
    prompt_ids = prompt_ids["input_ids"]
    target = prover_target(record.tactic, record.thought)
    completion_ids = tokenizer(target + "<|im_end|>\n", add_special_tokens=False)["input_ids"]
    assert ids == prompt_ids + completion_ids
    for i, (token, label) in enumerate(zip(ids, labels, strict=True)):
        if i < len(prompt_ids):
            assert label == -100, (i, tokenizer.decode([token]))
        else:
            assert label == token, (i, tokenizer.decode([token]))
    assert tokenizer.decode(ids[len(prompt_ids) :]) == target + "<|im_end|>\n"
    assert tokenizer.decode(ids[len(prompt_ids) :][-2:]) == "<|im_end|>\n"


@pytest.mark.parametrize("chat", [True, False])
def test_tokenisation_matches_trl(chat, tokenizer, plain_tokenizer, thoughts, tmp_path):
    """Our pre-tokenised rows equal what TRL's SFTTrainer makes of the raw prompt-completion rows."""
    from datasets import Dataset
    from trl import SFTConfig as TRLConfig
    from trl import SFTTrainer

    tok = tokenizer if chat else plain_tokenizer
    examples, _ = load_examples([str(thoughts)], [], "thought", seed=0)
    rows = [render(e, chat) for e in examples]
    assert isinstance(rows[0]["prompt"], list) is chat
    ours = tokenize(rows, tok, batch_size=7)
    args = TRLConfig(output_dir=str(tmp_path), max_length=None, report_to="none", bf16=False)
    theirs = SFTTrainer(
        _tiny_model(tok), args=args, train_dataset=Dataset.from_list(rows), processing_class=tok
    ).train_dataset
    for i, row in enumerate(theirs):
        n = ours.prompt_lens[i]
        assert row["input_ids"] == ours.input_ids[i]
        assert row["labels"] == [-100] * n + ours.input_ids[i][n:]
    if not chat:
        assert tok.decode(ours.input_ids[0]).endswith(tok.eos_token)


def test_counts_truncated_and_dropped(tokenizer, thoughts):
    """Counts by max_length checked against lengths computed independently from the prompt."""
    records = thought_records()
    prompt_lens, full_lens = [], []
    for r in records:
        prompt = prover_prompt(r.state, True, tokenizer)
        full = prompt + prover_target(r.tactic, r.thought) + "<|im_end|>\n"
        prompt_lens.append(len(tokenizer(prompt, add_special_tokens=False)["input_ids"]))
        full_lens.append(len(tokenizer(full, add_special_tokens=False)["input_ids"]))
    limit = sorted(prompt_lens)[len(records) // 2]  # about half the prompts fill the limit
    dropped = sum(p >= limit for p in prompt_lens)
    truncated = sum(p < limit < f for p, f in zip(prompt_lens, full_lens, strict=True))
    assert dropped and truncated

    dataset, stats = build_dataset([str(thoughts)], tokenizer, max_length=limit)
    assert (stats.dropped_prompt_too_long, stats.truncated) == (dropped, truncated)
    assert stats.kept == len(dataset) == len(records) - dropped
    assert stats.longest == max(full_lens)
    assert stats.completion_tokens == sum(
        min(f, limit) - p for p, f in zip(prompt_lens, full_lens, strict=True) if p < limit
    )

    _, strict = build_dataset([str(thoughts)], tokenizer, max_length=limit, drop_overlong=True)
    assert strict.dropped_overlong == truncated and strict.truncated == 0
    assert strict.kept == len(records) - dropped - truncated
    with pytest.raises(DataError, match="no example fits max_length 16"):
        build_dataset([str(thoughts)], tokenizer, max_length=16)


def test_paper_config_validates():
    cfg = load_config(SFTConfig, REPO / "configs" / "sft-paper.yaml")
    cfg.validate(num_processes=8)
    assert (cfg.learning_rate, cfg.global_batch_size, cfg.max_length) == (2e-5, 128, 2048)
    assert (cfg.lr_scheduler, cfg.epochs, cfg.format) == ("cosine", 1.0, "thought")
    assert cfg.gradient_accumulation_steps(8) == 128 // (cfg.per_device_batch_size * 8)
    assert cfg.gradient_accumulation_steps(1) == 128 // cfg.per_device_batch_size
    with pytest.raises(ConfigError, match="not a multiple of per_device_batch_size 4 x 3"):
        cfg.validate(num_processes=3)


def test_every_sft_config_validates():
    for path in sorted((REPO / "configs").glob("sft-*.yaml")):
        load_config(SFTConfig, path).validate()


def test_config_checks():
    with pytest.raises(ConfigError, match="give at least one training file"):
        SFTConfig().validate()
    with pytest.raises(ConfigError, match="data_weights has 1 entries for 2 files"):
        SFTConfig(data=["a", "b"], data_weights=[1.0]).validate()
    with pytest.raises(ConfigError, match=r"warmup_ratio must be in \[0, 1\)"):
        SFTConfig(data=["a"], warmup_ratio=1.5).validate()
    cfg = load_config(SFTConfig, None, ["learning_rate=1e-5", "data=a.jsonl,b.json"])
    assert cfg.learning_rate == 1e-5 and cfg.data == ["a.jsonl", "b.json"]


def _tiny_model(tokenizer):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    return Qwen2ForCausalLM(config)
