"""Configs of `leanstar sparse stats` and `leanstar sparse eval`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from leanstar.config import SparseConfig, nested, option

TEXT_HELP = (
    "what to run through the model: '' = the Lean proof states of the bundled LeanDojo "
    "sample; a LeanDojo .json; a .jsonl of thought_step / traced_step / theorem records or "
    "{text, context} objects; any other file = plain text"
)


@dataclass
class SparseRunConfig:
    """Fields both commands share: the model, the text, and how it is batched."""

    model: str = option(
        "runs/tiny-model", "checkpoint directory (dense or Q-Sparse)", positional=True, nargs="?"
    )
    text: str = option("", TEXT_HELP)
    max_tokens: int = option(8192, "score at most this many tokens (0 = the whole text)")
    max_length: int = option(512, "tokens per sequence; longer documents are cut into windows")
    batch_tokens: int = option(4096, "padded tokens per forward pass")
    device: str = option("auto", "torch device (auto: cuda if present, else cpu)")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = option(
        "auto", "weights dtype (auto: float32 on CPU, bfloat16 on GPU)"
    )


@dataclass
class SparseStatsConfig(SparseRunConfig):
    qsparse: SparseConfig = nested(
        SparseConfig,
        "Q-Sparse settings to measure under when qsparse.enabled (they override the "
        "checkpoint's); otherwise the checkpoint's own settings, or dense if it has none",
    )


@dataclass
class SparseEvalConfig(SparseRunConfig):
    keep_ratios: list[float] = option(
        [1.0, 0.7, 0.6, 0.5, 0.4], "keep-ratios to compare (1.0 = dense, same weights)"
    )
    out: str = option("", "also write the results to this JSON file ('' = only print them)")
