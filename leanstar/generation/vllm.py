"""The vLLM sampler: the offline engine (`vllm.LLM`), the production path on GPUs.

One `LLM.generate` call takes the whole batch; vLLM schedules it continuously and, with prefix
caching on, computes the shared prompt prefix (chat template, the many attempts that start
from the same state) once. Each request asks for the log-probability of every sampled token
(`logprobs=0`); vLLM V1 reports the model's raw log-probabilities (before temperature and
top-p), the same quantity the transformers sampler reports, so scores mean the same thing on
either path.

vLLM knows nothing of Q-Sparse: it would load a Q-Sparse checkpoint's ordinary Qwen2 weights
and sample from the dense model without a word. So a checkpoint whose config.json carries
Q-Sparse settings is refused here; serve it with the transformers backend (which restores the
sparsity through `leanstar.sparse.qsparse.load_model`) or the compiled decode backend.

`vllm` is imported only inside `VLLMEngine`, so this module imports without it; the mapping of
vLLM's outputs to `Sample`s is plain code tested with stand-ins shaped like `RequestOutput`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

from leanstar.config import GeneratorConfig
from leanstar.generation.base import Sample, SamplingParams

QSPARSE_CONFIG_KEY = "qsparse"  # leanstar.sparse.qsparse.CONFIG_KEY, read without torch


class Engine(Protocol):
    """What the sampler needs of vLLM: `generate` -> one RequestOutput-like per prompt."""

    def generate(self, prompts: list[str], params: SamplingParams) -> list[Any]: ...

    def get_tokenizer(self) -> Any: ...


class VLLMEngine:
    """`vllm.LLM` built from a GeneratorConfig."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        try:
            import vllm
        except ImportError as e:
            raise ImportError(
                "the vllm backend needs vllm (pip install 'leanstar[vllm]', a CUDA machine)"
            ) from e
        refuse_qsparse(cfg.model)
        self._vllm = vllm
        self.llm = vllm.LLM(
            model=cfg.model,
            dtype=cfg.dtype,
            seed=cfg.seed,
            gpu_memory_utilization=cfg.gpu_memory_utilization,
            tensor_parallel_size=cfg.tensor_parallel_size,
            enable_prefix_caching=True,
        )

    def generate(self, prompts: list[str], params: SamplingParams) -> list[Any]:
        sampling = self._vllm.SamplingParams(**vllm_sampling_kwargs(params))
        return self.llm.generate(prompts, sampling, use_tqdm=False)

    def get_tokenizer(self) -> Any:
        return self.llm.get_tokenizer()


class VLLMGenerator:
    name = "vllm"

    def __init__(self, cfg: GeneratorConfig, engine: Engine | None = None) -> None:
        self.cfg = cfg
        self.engine = engine if engine is not None else VLLMEngine(cfg)
        self._tokenizer = self.engine.get_tokenizer()

    @property
    def tokenizer(self):
        return self._tokenizer

    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Sample]]:
        if not prompts:
            return []
        outputs = self.engine.generate(prompts, params)
        if len(outputs) != len(prompts):
            raise RuntimeError(f"vLLM answered {len(outputs)} of {len(prompts)} prompts")
        return [[to_sample(c, self._tokenizer) for c in out.outputs] for out in outputs]

    def close(self) -> None:
        self.engine = None


def refuse_qsparse(model: str) -> None:
    """Raise if `model` is a local checkpoint saved under Q-Sparse (see the module docstring)."""
    config = Path(model) / "config.json"
    if config.is_file() and QSPARSE_CONFIG_KEY in json.loads(config.read_text(encoding="utf-8")):
        raise ValueError(
            f"{config}: a Q-Sparse checkpoint; vLLM would sample from the dense model. Use "
            "generator.backend transformers (or compiled), which restore the sparsity"
        )


def vllm_sampling_kwargs(params: SamplingParams) -> dict[str, Any]:
    """Our sampling settings as `vllm.SamplingParams` keyword arguments."""
    return {
        "n": params.n,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "max_tokens": params.max_new_tokens,
        "stop": list(params.stop) or None,
        "seed": params.seed,
        "logprobs": 0,  # the sampled token's own log-probability, nothing more
    }


def to_sample(completion: Any, tokenizer: Any = None) -> Sample:
    """A `Sample` from a vLLM `CompletionOutput` (`text`, `token_ids`, `logprobs`: per token a
    mapping token id -> Logprob, `finish_reason`). The token ids run up to and including the
    end-of-sequence token or the one that completed a stop string (which `text` leaves out)."""
    ids = list(completion.token_ids)
    if completion.logprobs is None:
        raise ValueError("vLLM returned no logprobs; the sampler asks for them (logprobs=0)")
    token_lps = tuple(float(entry[tid].logprob) for tid, entry in zip(ids, completion.logprobs))
    text = completion.text
    ends = _token_ends(completion, ids, text, tokenizer)
    return Sample.of_tokens(text, completion.finish_reason or "length", token_lps, ends)


def _token_ends(completion: Any, ids: list[int], text: str, tokenizer: Any) -> tuple[int, ...]:
    """Each token's end offset in `text`, capped at its length. vLLM's incremental detokenizer
    gives each token's text (`decoded_token`); when those pieces do not spell `text` (partial
    UTF-8 bytes), fall back to decoding prefixes with the tokenizer."""
    pieces = [
        getattr(entry[tid], "decoded_token", None) for tid, entry in zip(ids, completion.logprobs)
    ]
    if all(isinstance(p, str) for p in pieces):
        ends, pos = [], 0
        for p in pieces:
            pos += len(p)
            ends.append(pos)
        if "".join(pieces).startswith(text):
            return tuple(min(e, len(text)) for e in ends)
    if tokenizer is None:
        raise ValueError("cannot place vLLM tokens in the text without a tokenizer")
    ends = [len(tokenizer.decode(ids[: i + 1], skip_special_tokens=True)) for i in range(len(ids))]
    return tuple(min(e, len(text)) for e in ends)
