"""Configs of `leanstar sft` and `leanstar iterate`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from leanstar.config import ConfigError, SparseConfig, nested, option
from leanstar.search.config import SearchConfig


@dataclass
class SFTConfig:
    """`leanstar sft`: fine-tune a causal LM on state -> thought + tactic (or tactic only).

    Defaults follow Lean-STaR (Lin et al. 2024): lr 2e-5, global batch 128, max length 2048,
    cosine schedule, 1 epoch. Fields the paper does not state (warm-up, weight decay) say so.
    """

    run_dir: str = option("runs/sft", "run directory; the checkpoint goes to RUN_DIR/model")
    base_model: str = option(
        "runs/tiny-model", "base checkpoint directory or Hugging Face model id"
    )
    data: list[str] = option(
        [],
        "training files: thought records (JSONL of ThoughtStep) or LeanDojo Benchmark 4 JSON "
        "(tactic-only); `bundled:NAME` for a bundled file",
    )
    data_weights: list[float] = option(
        [],
        "mixture weight per data file ([] = all 1.0): each file contributes weight x its "
        "examples (whole copies, then a seeded sample for the fraction)",
    )
    format: Literal["thought", "tactic"] = option(
        "thought",
        "thought: state -> thought + tactic (Lean-STaR; needs thought records); tactic: "
        "state -> tactic (the paper's SFT baseline; thoughts in thought records are ignored)",
    )
    dtype: Literal["float32", "bfloat16", "auto"] = option(
        "float32",
        "weights dtype when loading the base model (float32 keeps fp32 master weights under "
        "bf16 autocast; bfloat16 trains pure bf16)",
    )
    trust_remote_code: bool = option(
        False, "run model code shipped with the base checkpoint (e.g. InternLM2); off by default"
    )
    attn_implementation: str = option(
        "", "attention kernel: sdpa, flash_attention_2, eager ('' = the transformers default)"
    )
    learning_rate: float = option(2e-5, "peak learning rate (paper: 2e-5)")
    lr_scheduler: str = option("cosine", "transformers scheduler name (paper: cosine)")
    warmup_ratio: float = option(
        0.03, "fraction of steps spent warming up, in [0, 1) (not stated in the paper)"
    )
    weight_decay: float = option(0.0, "AdamW weight decay (not stated in the paper)")
    max_grad_norm: float = option(1.0, "gradient clipping norm (0 = off)")
    epochs: float = option(1.0, "passes over the data (paper: 1)")
    max_steps: int = option(-1, "stop after this many optimizer steps (-1 = by epochs)")
    per_device_batch_size: int = option(4, "examples per device per micro-step")
    global_batch_size: int = option(
        128,
        "examples per optimizer step over all processes (paper: 128); gradient accumulation "
        "= global / (per-device x processes), which must divide exactly",
    )
    max_length: int = option(
        2048,
        "tokens per example (paper: 2048); longer ones are truncated (or dropped with "
        "drop_overlong), and both are counted",
    )
    drop_overlong: bool = option(
        False, "drop examples longer than max_length instead of truncating their completion"
    )
    packing: bool = option(
        False, "pack several examples into one max_length sequence (TRL best-fit decreasing)"
    )
    bf16: bool = option(False, "bfloat16 mixed precision (GPU)")
    gradient_checkpointing: bool = option(False, "trade compute for memory")
    lora: bool = option(False, "train LoRA adapters through peft, merged into the saved model")
    lora_r: int = option(16, "LoRA rank")
    lora_alpha: int = option(32, "LoRA alpha")
    lora_dropout: float = option(0.05, "LoRA dropout")
    lora_target_modules: list[str] = option(
        ["all-linear"], "modules that get adapters (peft names; all-linear = every projection)"
    )
    seed: int = option(42, "seed of initialisation, data order and the mixture sample")
    save_steps: int = option(500, "checkpoint every this many steps (the resume points)")
    save_total_limit: int = option(2, "checkpoints kept in RUN_DIR/checkpoints (0 = all)")
    keep_checkpoints: bool = option(
        False,
        "keep the Trainer checkpoints after the final model is saved (they hold optimizer "
        "state, about 3x the model's size)",
    )
    logging_steps: int = option(10, "log metrics every this many steps")
    report_to: list[str] = option(
        [], "trackers passed to transformers: tensorboard, wandb, ... ([] = none)"
    )
    qsparse: SparseConfig = nested(SparseConfig, "train under Q-Sparse top-K activation sparsity")

    def gradient_accumulation_steps(self, num_processes: int = 1) -> int:
        """Micro-steps per optimizer step that make up `global_batch_size` on `num_processes`."""
        per_step = self.per_device_batch_size * num_processes
        if per_step <= 0 or self.global_batch_size % per_step:
            raise ConfigError(
                f"global_batch_size {self.global_batch_size} is not a multiple of "
                f"per_device_batch_size {self.per_device_batch_size} x {num_processes} process(es)"
            )
        return self.global_batch_size // per_step

    def validate(self, num_processes: int = 1) -> None:
        """Raise ConfigError on values that type checks let through but training cannot use."""
        problems = []
        if not self.data:
            problems.append("data: give at least one training file")
        if self.data_weights and len(self.data_weights) != len(self.data):
            problems.append(
                f"data_weights has {len(self.data_weights)} entries for {len(self.data)} files"
            )
        if any(w < 0 for w in self.data_weights):
            problems.append("data_weights must not be negative")
        if not 0.0 <= self.warmup_ratio < 1.0:
            problems.append(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.max_length < 16:
            problems.append(f"max_length {self.max_length} is too small to hold a prompt")
        if self.epochs <= 0 and self.max_steps <= 0:
            problems.append("set epochs > 0 or max_steps > 0")
        if self.save_steps <= 0 or self.logging_steps <= 0:
            problems.append("save_steps and logging_steps must be positive")
        if problems:
            raise ConfigError("SFTConfig: " + "; ".join(problems))
        self.gradient_accumulation_steps(num_processes)
        if self.qsparse.enabled:
            from leanstar.sparse.qsparse import check_sparse_config

            check_sparse_config(self.qsparse)


@dataclass
class IterateConfig:
    run_dir: str = option("runs/iterate", "run directory holding every round")
    rounds: int = option(2, "expert-iteration rounds after round 0 (paper: 2)")
    init_checkpoint: str = option("", "round-0 model; '' = train it with `sft` on the thought data")
    retrain_from: Literal["base", "previous"] = option(
        "base", "each round trains from the base model or continues the previous round's"
    )
    max_proofs_per_theorem: int = option(1, "distinct proofs kept per theorem per round")
    drop_multiline_tactics: bool = option(False, "drop steps whose tactic spans several lines")
    sft: SFTConfig = nested(SFTConfig, "training settings for every round")
    search: SearchConfig = nested(SearchConfig, "sampling settings on the training theorems")
