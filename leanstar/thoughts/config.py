"""Config of `leanstar thoughts`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from leanstar.config import GeneratorConfig, nested, option


@dataclass
class ThoughtsConfig:
    run_dir: str = option("runs/thoughts", "run directory (records, rejects, summary, dataset)")
    input: str = option(
        "bundled:leandojo-benchmark4-sample.json", "LeanDojo Benchmark 4 JSON with traced tactics"
    )
    theorems_per_file: int = option(5, "at most this many theorems per source file (paper: 5)")
    tactics_per_theorem: int = option(4, "at most this many tactics per theorem (paper: 4)")
    seed: int = option(0, "seed of the pair sampling")
    teacher: Literal["openai", "local"] = option(
        "openai",
        "openai: an OpenAI-compatible chat API; local: a Hugging Face model via generation/",
    )
    generator: GeneratorConfig = nested(
        GeneratorConfig, "the teacher model and its sampling settings"
    )
    concurrency: int = option(16, "requests in flight at once (openai teacher)")
    requests_per_minute: float = option(0.0, "request budget per minute (0 = unlimited)")
    tokens_per_minute: float = option(0.0, "token budget per minute (0 = unlimited)")
    max_retries: int = option(
        6, "retries on rate limits and server errors, with exponential backoff"
    )
    price_input_per_mtok: float = option(0.0, "price per million prompt tokens, for the cost shown")
    price_output_per_mtok: float = option(0.0, "price per million completion tokens")
    max_thought_chars: int = option(1200, "longer thoughts are rejected")
