"""Configs of `leanstar sparse stats` and `leanstar sparse eval`."""

from __future__ import annotations

from dataclasses import dataclass

from leanstar.config import SparseConfig, nested, option


@dataclass
class SparseStatsConfig:
    model: str = option(
        "runs/tiny-model", "checkpoint directory (dense or Q-Sparse)", positional=True
    )
    qsparse: SparseConfig = nested(SparseConfig, "sparsity to apply if the checkpoint has none")
    text: str = option("", "text file to run through the model ('' = bundled Lean states)")


@dataclass
class SparseEvalConfig:
    model: str = option("runs/tiny-model", "checkpoint directory", positional=True)
    text: str = option("", "text or trace file to score ('' = bundled Lean states)")
    keep_ratios: list[float] = option(
        [1.0, 0.7, 0.6, 0.5, 0.4], "keep-ratios to compare with dense"
    )
    max_tokens: int = option(20000, "score at most this many tokens")
