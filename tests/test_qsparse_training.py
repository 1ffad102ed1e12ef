"""Training under Q-Sparse with transformers' Trainer: the SFT hook and the keep-ratio warmup."""

from __future__ import annotations

import pytest
import torch

from leanstar.config import SparseConfig
from leanstar.sparse.qsparse import load_model, qsparse_settings
from leanstar.sparse.schedule import KeepRatioWarmup, prepare_qsparse_training, warmup_config


def test_warmup_config_is_linear_from_one_to_target():
    cfg = SparseConfig(enabled=True, keep_ratio=0.5, keep_ratio_mlp=0.4, warmup_steps=4)
    assert warmup_config(cfg, 0).keep_ratio == 1.0
    mid = warmup_config(cfg, 2)
    assert mid.keep_ratio == pytest.approx(0.75) and mid.keep_ratio_mlp == pytest.approx(0.7)
    assert mid.keep_ratio_attn is None
    assert warmup_config(cfg, 4) == cfg and warmup_config(cfg, 9) == cfg
    nm = SparseConfig(enabled=True, pattern="nm", warmup_steps=4)
    assert warmup_config(nm, 1) == nm  # N:M has no ratio to anneal


def test_disabled_is_a_no_op():
    model = torch.nn.Linear(2, 2)
    assert prepare_qsparse_training(model, SparseConfig()) == []


def test_trainer_anneals_keep_ratio_and_checkpoint_reloads_sparse(tmp_path):
    from transformers import (
        Qwen2Config,
        Qwen2ForCausalLM,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    torch.manual_seed(0)
    model = Qwen2ForCausalLM(
        Qwen2Config(
            vocab_size=64,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
        )
    )
    cfg = SparseConfig(enabled=True, keep_ratio=0.5, warmup_steps=4)
    callbacks = prepare_qsparse_training(model, cfg)
    assert len(callbacks) == 1 and isinstance(callbacks[0], KeepRatioWarmup)

    seen: list[float] = []

    class Record(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            seen.append(model.model.layers[0].mlp.down_proj.qsparse.keep_ratio)

    ids = torch.randint(0, 64, (8, 8), generator=torch.Generator().manual_seed(1))
    data = [{"input_ids": row, "labels": row} for row in ids]
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"),
        max_steps=6,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    Trainer(model=model, args=args, train_dataset=data, callbacks=[*callbacks, Record()]).train()
    assert seen == pytest.approx([1.0, 0.875, 0.75, 0.625, 0.5, 0.5])

    model.save_pretrained(tmp_path / "ckpt")
    assert qsparse_settings(load_model(tmp_path / "ckpt")) == cfg
