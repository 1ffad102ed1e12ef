"""Config of `leanstar search` (also nested in `iterate` and `eval`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from leanstar.config import ConfigError, GeneratorConfig, LeanConfig, nested, option


@dataclass
class SearchConfig:
    run_dir: str = option(
        "runs/search", "run directory; trajectories go to RUN_DIR/trajectories.jsonl"
    )
    theorems: str = option(
        "bundled:leandojo-benchmark4-sample.json",
        "theorems: a theorem JSONL / miniF2F file, `bundled:NAME`, `hf:DATASET`, or LeanDojo "
        "JSON (a `.json` list of traced theorems; only the replay and dojo backends start those)",
    )
    split: str = option("", "keep only theorems of this split ('' = all)")
    limit: int = option(0, "prove at most this many theorems (0 = all)")
    strategy: Literal["sampling", "best_first"] = option(
        "sampling",
        "sampling: K independent attempts (Lean-STaR); best_first: priority queue by log-prob",
    )
    with_thoughts: bool = option(True, "the prover writes a thought before each tactic")
    attempts: int = option(
        32, "K: independent attempts per theorem (best-first: independent searches, usually 1)"
    )
    max_steps: int = option(
        50, "sampling: tactics per attempt (paper eval: 50; training rounds: 5); best-first: depth"
    )
    max_resamples: int = option(
        8, "sampling: failed samples allowed at one step; one more ends the attempt"
    )
    theorem_time_s: float = option(
        600.0, "wall-clock budget per theorem over all its attempts (training rounds: 60)"
    )
    candidates: int = option(8, "S: candidates sampled per expansion (best-first)")
    max_expansions: int = option(100, "node expansions per search (best-first)")
    score: Literal["tactic", "thought_tactic"] = option(
        "tactic",
        "log-prob a step is scored by (best-first ranks by the sum along the path): the tactic's "
        "tokens only, or the thought's and the tactic's",
    )
    concurrent_theorems: int = option(
        16, "theorems searched at once, all their attempts together (sampler calls are batched)"
    )
    batch_wait_s: float = option(
        0.02,
        "longest a sampler request waits for others to join its batch while some searches are "
        "still busy in Lean (the batch goes at once when it is full or everyone waits)",
    )
    generator: GeneratorConfig = nested(
        GeneratorConfig, "the prover and its sampling settings (batch_size: prompts per call)"
    )
    lean: LeanConfig = nested(LeanConfig, "the environment that runs tactics")
    ray: bool = option(False, "spread theorems over a Ray cluster (needs the `ray` extra)")
    ray_address: str = option(
        "", "Ray cluster to join ('' = the one in RAY_ADDRESS, else start a local one)"
    )
    ray_workers: int = option(
        0,
        "search workers on the cluster, each with its own sampler and Lean pool "
        "(0 = one per GPU, or 1 without GPUs)",
    )
    ray_gpus_per_worker: float = option(
        -1.0, "GPUs each worker holds (-1 = 1 if the cluster has GPUs, else 0)"
    )


_AT_LEAST = {
    "attempts": 1,
    "max_steps": 1,
    "max_resamples": 0,
    "candidates": 1,
    "max_expansions": 1,
    "concurrent_theorems": 1,
    "theorem_time_s": 0.0,
    "batch_wait_s": 0.0,
    "limit": 0,
}


def check_search_config(cfg: SearchConfig) -> None:
    """Refuse values no search can run with (flags are set after the dataclass is built, so
    this runs when a search starts, not in `__post_init__`)."""
    bad = [
        f"{k} must be >= {v:g} (got {getattr(cfg, k)!r})"
        for k, v in _AT_LEAST.items()
        if getattr(cfg, k) < v
    ]
    if cfg.generator.batch_size < 1:
        bad.append(f"generator.batch_size must be >= 1 (got {cfg.generator.batch_size!r})")
    if bad:
        raise ConfigError("search config: " + "; ".join(bad))
