"""Configs of `leanstar sft` and `leanstar iterate`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from leanstar.config import SparseConfig, nested, option
from leanstar.search.config import SearchConfig


@dataclass
class SFTConfig:
    run_dir: str = option("runs/sft", "run directory; the checkpoint goes to RUN_DIR/model")
    base_model: str = option(
        "runs/tiny-model", "base checkpoint directory or Hugging Face model id"
    )
    data: list[str] = option(
        [], "training files: thought records (JSONL) or LeanDojo JSON (tactic-only)"
    )
    data_weights: list[float] = option([], "mixture weight per data file ([] = all 1.0)")
    format: Literal["thought", "tactic"] = option(
        "thought",
        "thought: state -> thought + tactic (Lean-STaR); tactic: state -> tactic (baseline)",
    )
    learning_rate: float = option(2e-5, "peak learning rate (paper: 2e-5)")
    lr_scheduler: str = option("cosine", "transformers scheduler name (paper: cosine)")
    warmup_ratio: float = option(0.03, "fraction of steps spent warming up")
    epochs: float = option(1.0, "passes over the data (paper: 1)")
    max_steps: int = option(-1, "stop after this many optimizer steps (-1 = by epochs)")
    per_device_batch_size: int = option(4, "examples per device per micro-step")
    global_batch_size: int = option(
        128, "examples per optimizer step over all processes (paper: 128)"
    )
    max_length: int = option(
        2048, "tokens per example (paper: 2048); longer ones are truncated and counted"
    )
    packing: bool = option(False, "pack several examples into one sequence")
    bf16: bool = option(False, "train in bfloat16 (GPU)")
    gradient_checkpointing: bool = option(False, "trade compute for memory")
    lora: bool = option(False, "train LoRA adapters through peft instead of all weights")
    lora_r: int = option(16, "LoRA rank")
    lora_alpha: int = option(32, "LoRA alpha")
    seed: int = option(42, "training seed")
    save_steps: int = option(500, "checkpoint every this many steps (resume point)")
    logging_steps: int = option(10, "log metrics every this many steps")
    report_to: list[str] = option([], "trackers: tensorboard, wandb ([] = none)")
    qsparse: SparseConfig = nested(SparseConfig, "train under Q-Sparse top-K activation sparsity")


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
