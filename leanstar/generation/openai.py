"""The OpenAI-compatible completions sampler: a remote `vllm serve` (or any server speaking
`POST /v1/completions`).

Each prompt is one request (`n` samples, `logprobs=0` for the sampled tokens' own
log-probabilities), sent concurrently from a thread pool: the server batches concurrent
requests itself (vLLM's continuous batching), and every compatible server accepts one prompt
per request. The `openai` client retries rate limits, server errors and dropped connections
with backoff; an error that outlasts its retries stops the search with the server's message,
never as a failed proof.

The prompt is the prover prompt as the runner builds it. The completions endpoint applies no
chat template, so the sampler loads the model's tokenizer (from `generator.model`, a local
checkpoint or Hub id) to let the runner apply it; without one, prompts use the plain format and
a notice says so.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from leanstar.config import GeneratorConfig
from leanstar.generation.base import Sample, SamplingParams

MAX_RETRIES = 6
REQUEST_TIMEOUT_S = 600.0
MAX_CONNECTIONS = 256
_UNSET = object()


class OpenAIGenerator:
    name = "openai"

    def __init__(self, cfg: GeneratorConfig, client: Any = None) -> None:
        if client is None:
            from openai import OpenAI

            if not cfg.base_url:
                raise ValueError(
                    "the openai backend needs generator.base_url, e.g. http://localhost:8000/v1"
                )
            client = OpenAI(
                base_url=cfg.base_url,
                api_key=os.environ.get(cfg.api_key_env) or "EMPTY",  # vLLM's no-auth convention
                max_retries=MAX_RETRIES,
                timeout=REQUEST_TIMEOUT_S,
            )
        self.cfg, self.client = cfg, client
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, min(cfg.batch_size, MAX_CONNECTIONS)), thread_name_prefix="openai"
        )
        self._tokenizer: Any = _UNSET

    @property
    def tokenizer(self):
        if self._tokenizer is _UNSET:
            self._tokenizer = _load_tokenizer(self.cfg.model)
        return self._tokenizer

    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Sample]]:
        futures = [self._pool.submit(self._complete, p, params) for p in prompts]
        return [f.result() for f in futures]

    def _complete(self, prompt: str, params: SamplingParams) -> list[Sample]:
        kwargs: dict[str, Any] = {
            "model": self.cfg.model,
            "prompt": prompt,
            "n": params.n,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_new_tokens,
            "logprobs": 0,
        }
        if params.stop:
            kwargs["stop"] = list(params.stop)
        if params.seed is not None:
            kwargs["seed"] = params.seed
        response = self.client.completions.create(**kwargs)
        choices = sorted(response.choices, key=lambda c: c.index)
        if len(choices) != params.n:
            raise RuntimeError(
                f"{self.cfg.base_url}: asked for {params.n} completions, got {len(choices)}"
            )
        return [choice_to_sample(c, self.cfg.base_url) for c in choices]

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        close = getattr(self.client, "close", None)
        if close is not None:
            close()


def choice_to_sample(choice: Any, where: str = "server") -> Sample:
    """A `Sample` from one completions choice (`text`, `finish_reason`, `logprobs` with
    `tokens`, `token_logprobs` and, from vLLM, `text_offset`)."""
    lp = choice.logprobs
    if lp is None or lp.token_logprobs is None:
        raise ValueError(f"{where} returned no logprobs (the sampler asks for logprobs=0)")
    values = lp.token_logprobs
    if any(v is None for v in values):
        raise ValueError(f"{where} returned a token without a log-probability")
    token_lps = tuple(float(v) for v in values)
    text = choice.text or ""
    ends = _token_ends(list(lp.tokens or []), list(lp.text_offset or []), len(text))
    return Sample.of_tokens(text, choice.finish_reason or "length", token_lps, ends)


def _token_ends(tokens: list[str], offsets: list[int], length: int) -> tuple[int, ...]:
    """Token end offsets in the completion text, from `text_offset` when the server sends one
    per token, else from the token strings' lengths; capped at the text's length."""
    if offsets and len(offsets) == len(tokens):
        base = offsets[0]
        ends = [o - base for o in offsets[1:]] + [offsets[-1] - base + len(tokens[-1])]
    else:
        ends, pos = [], 0
        for tok in tokens:
            pos += len(tok)
            ends.append(pos)
    out, last = [], 0
    for e in ends:
        last = max(last, min(e, length))
        out.append(last)
    return tuple(out)


def _load_tokenizer(model: str):
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(model)
    except Exception as e:  # any failure means: no chat template; say so, use plain prompts
        print(
            f"leanstar: no tokenizer for {model!r} ({type(e).__name__}); prompts use the plain "
            "format, which is right only for a model trained without a chat template",
            file=sys.stderr,
        )
        return None
