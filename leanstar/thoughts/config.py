"""Config of `leanstar thoughts`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from leanstar.config import ConfigError, GeneratorConfig, option

DEFAULT_TEACHER = "gpt-4o"  # the paper's teacher was GPT-4; any chat model id works


@dataclass
class ThoughtsConfig:
    """Thought synthesis: a teacher model explains each sampled (proof state, tactic) pair."""

    run_dir: str = option(
        "runs/thoughts",
        "run directory: thoughts.jsonl (accepted), rejects.jsonl (with reasons), failures.jsonl "
        "(requests that never got an answer), summary.json, dataset/",
    )
    input: str = option(
        "bundled:leandojo-benchmark4-sample.json", "LeanDojo Benchmark 4 JSON with traced tactics"
    )
    theorems_per_file: int = option(5, "at most this many theorems per source file (paper: 5)")
    tactics_per_theorem: int = option(4, "at most this many tactics per theorem (paper: 4)")
    max_pairs: int = option(0, "stop after this many sampled pairs (0 = all)")
    seed: int = option(0, "seed of the pair sampling")
    teacher: Literal["openai", "local"] = option(
        "openai",
        "openai: an OpenAI-compatible chat API (generator.base_url, generator.model, key from "
        "the variable named by generator.api_key_env); local: a Hugging Face model through the "
        "prover's transformers sampler (generator.model is a checkpoint directory or Hub id)",
    )
    generator: GeneratorConfig = field(
        default_factory=lambda: GeneratorConfig(model=DEFAULT_TEACHER),
        metadata={
            "help": "the teacher model and its sampling settings (paper: temperature 0.7); "
            "backend matters only for teacher: local"
        },
    )
    reasoning_effort: str = option(
        "",
        "for a reasoning model as the openai teacher (OpenAI o-series, gpt-5, ...): its effort, "
        "e.g. low, medium or high. Requests then carry reasoning_effort and "
        "max_completion_tokens (generator.max_new_tokens, which must leave room for the hidden "
        "reasoning) and leave out temperature, top_p, stop and seed, which such models refuse. "
        "'' = an ordinary chat model",
    )
    concurrency: int = option(
        16, "requests in flight at once (openai); local: prompts queued for the sampler's batches"
    )
    requests_per_minute: float = option(0.0, "request budget per minute (0 = unlimited)")
    tokens_per_minute: float = option(
        0.0, "token budget per minute, prompt + completion (0 = unlimited)"
    )
    request_timeout_s: float = option(120.0, "a request without an answer after this is retried")
    max_retries: int = option(
        6, "retries of one request on 429, 5xx, timeouts, dropped connections, malformed bodies"
    )
    backoff_base_s: float = option(1.0, "first retry waits about this long, doubling each time")
    backoff_max_s: float = option(60.0, "longest wait between two retries")
    price_input_per_mtok: float = option(0.0, "price per million prompt tokens, for the cost shown")
    price_output_per_mtok: float = option(0.0, "price per million completion tokens")
    max_thought_chars: int = option(1200, "longer thoughts are rejected as overlong")
    reject_lemma_names: bool = option(
        True, "reject thoughts that name a lemma the tactic uses but the state does not show"
    )
    export: bool = option(True, "save the accepted records as a Hugging Face dataset in dataset/")
    push_to_hub: str = option(
        "", "also push the dataset to this Hub repo id (needs network and a token; '' = no)"
    )
    progress: bool = option(True, "show a progress bar (rate, ETA, tokens, cost)")

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Raise ConfigError naming every value out of range (flags are set after __init__,
        so the driver calls this again)."""
        checks = {
            "concurrency": self.concurrency >= 1,
            "max_retries": self.max_retries >= 0,
            "max_pairs": self.max_pairs >= 0,
            "theorems_per_file": self.theorems_per_file >= 1,
            "tactics_per_theorem": self.tactics_per_theorem >= 1,
            "requests_per_minute": self.requests_per_minute >= 0,
            "tokens_per_minute": self.tokens_per_minute >= 0,
            "request_timeout_s": self.request_timeout_s > 0,
            "backoff_base_s": self.backoff_base_s >= 0,
            "max_thought_chars": self.max_thought_chars >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{n}={getattr(self, n)!r}" for n in bad)
            raise ConfigError(f"ThoughtsConfig: out of range: {values}")
        if self.reasoning_effort and self.teacher != "openai":
            raise ConfigError(
                f"ThoughtsConfig: reasoning_effort={self.reasoning_effort!r} applies to "
                f"teacher: openai only, not {self.teacher!r}"
            )

    @property
    def workers(self) -> int:
        """Requests kept in flight: for the local teacher, at least one full sampler batch."""
        if self.teacher == "local":
            return max(self.concurrency, self.generator.batch_size)
        return self.concurrency
