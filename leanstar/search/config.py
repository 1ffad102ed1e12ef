"""Config of `leanstar search` (also nested in `iterate` and `eval`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from leanstar.config import GeneratorConfig, LeanConfig, nested, option


@dataclass
class SearchConfig:
    run_dir: str = option(
        "runs/search", "run directory; trajectories go to RUN_DIR/trajectories.jsonl"
    )
    theorems: str = option(
        "bundled:leandojo-benchmark4-sample.json",
        "theorems: a theorem JSONL / miniF2F file, `bundled:NAME`, `hf:DATASET`, or LeanDojo JSON",
    )
    split: str = option("", "keep only theorems of this split ('' = all)")
    limit: int = option(0, "prove at most this many theorems (0 = all)")
    strategy: Literal["sampling", "best_first"] = option(
        "sampling",
        "sampling: K independent attempts (Lean-STaR); best_first: priority queue by log-prob",
    )
    with_thoughts: bool = option(True, "the prover writes a thought before each tactic")
    attempts: int = option(32, "K: independent attempts per theorem (sampling search)")
    max_steps: int = option(50, "tactics per attempt (paper eval: 50; training rounds: 5)")
    max_resamples: int = option(8, "failed tactics resampled per step before the attempt gives up")
    theorem_time_s: float = option(600.0, "wall-clock budget per theorem over all its attempts")
    candidates: int = option(8, "S: candidates sampled per expansion (best-first)")
    max_expansions: int = option(100, "node expansions per theorem (best-first)")
    score: Literal["tactic", "thought_tactic"] = option(
        "tactic", "best-first score: log-prob of the tactic tokens only, or of thought and tactic"
    )
    concurrent_theorems: int = option(
        16, "theorems searched at once (their sampler calls are batched)"
    )
    generator: GeneratorConfig = nested(GeneratorConfig, "the prover and its sampling settings")
    lean: LeanConfig = nested(LeanConfig, "the environment that runs tactics")
    ray: bool = option(False, "spread theorems over a Ray cluster (needs the `ray` extra)")
