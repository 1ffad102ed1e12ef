"""The `Generator` interface and the registry that picks a backend by name.

Backends (each imported only when chosen, so vllm and friends stay optional):
    transformers  leanstar.generation.hf        CPU and small-GPU path; used by the tests
    vllm          leanstar.generation.vllm      the production path (offline engine)
    openai        leanstar.generation.openai    any OpenAI-compatible completions server
    compiled      leanstar.sparse.decode        static-cache decode loop for Q-Sparse checkpoints
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Protocol

from leanstar.config import GeneratorConfig


@dataclass(frozen=True)
class SamplingParams:
    n: int = 1
    temperature: float = 0.7
    top_p: float = 1.0
    max_new_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass(frozen=True)
class Sample:
    """One sampled completion. `logprob` is the sum of its tokens' log-probabilities under the
    model (before temperature and top-p); `finish_reason` is "stop" (end of sequence or a stop
    string, which is cut from `text`) or "length". `token_ends[i]` is where token i ends in
    `text`, so a caller can score part of the completion (e.g. only the tactic)."""

    text: str
    logprob: float
    num_tokens: int
    finish_reason: str
    token_logprobs: tuple[float, ...] = field(default=(), repr=False)
    token_ends: tuple[int, ...] = field(default=(), repr=False)

    @classmethod
    def of_tokens(
        cls, text: str, finish_reason: str, token_logprobs: tuple[float, ...], token_ends
    ) -> Sample:
        """A sample from its tokens' log-probabilities: their sum and count follow."""
        return cls(
            text=text,
            logprob=float(sum(token_logprobs)),
            num_tokens=len(token_logprobs),
            finish_reason=finish_reason,
            token_logprobs=token_logprobs,
            token_ends=tuple(token_ends),
        )

    def logprob_of_span(self, start: int, end: int) -> float:
        """Summed log-probability of the tokens that overlap text[start:end]."""
        total, begin = 0.0, 0
        for lp, stop in zip(self.token_logprobs, self.token_ends, strict=False):
            if stop > start and begin < end:
                total += lp
            begin = stop
        return total


class Generator(Protocol):
    """Prompts in, `params.n` samples per prompt out, in prompt order."""

    name: str

    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Sample]]: ...

    @property
    def tokenizer(self): ...

    def close(self) -> None: ...


BACKENDS: dict[str, str] = {
    "transformers": "leanstar.generation.hf:HFGenerator",
    "vllm": "leanstar.generation.vllm:VLLMGenerator",
    "openai": "leanstar.generation.openai:OpenAIGenerator",
    "compiled": "leanstar.sparse.decode:CompiledGenerator",
}


def make_generator(cfg: GeneratorConfig) -> Generator:
    """The backend `cfg.backend`, built from `cfg`."""
    if cfg.backend not in BACKENDS:
        raise ValueError(
            f"unknown generator backend {cfg.backend!r}; choose from {sorted(BACKENDS)}"
        )
    module_name, _, class_name = BACKENDS[cfg.backend].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ImportError(f"generator backend {cfg.backend!r} needs a missing package: {e}") from e
    return getattr(module, class_name)(cfg)
