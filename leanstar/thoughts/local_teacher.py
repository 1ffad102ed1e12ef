"""Teacher backend: a local Hugging Face model through the prover's samplers (no API at all).

It uses `leanstar.generation.make_generator` (transformers by default, vllm when
`generator.backend: vllm`), so synthesis and proof search share one sampling code path. The
conversation goes through the tokenizer's chat template when it has one, else it is written
out as labelled plain text (`leanstar.prompting.chat_to_prompt`).

The driver asks one pair at a time, concurrently; requests that arrive while the model is busy
are gathered into the next batch of up to `generator.batch_size` prompts, run on a worker
thread so the event loop (and the progress bar) stays live.
"""

from __future__ import annotations

import asyncio

from leanstar.generation.base import Generator
from leanstar.prompting import chat_to_prompt
from leanstar.thoughts.config import ThoughtsConfig
from leanstar.thoughts.teacher import Answer, Fatal, Messages, rough_token_count

SAMPLER_BACKENDS = ("transformers", "vllm", "compiled")


class LocalTeacher:
    def __init__(self, cfg: ThoughtsConfig, generator: Generator | None = None) -> None:
        from leanstar.generation import make_generator

        gen = cfg.generator
        if gen.backend not in SAMPLER_BACKENDS:
            raise Fatal(
                f"teacher 'local' samples in-process; generator.backend must be one of "
                f"{SAMPLER_BACKENDS}, got {gen.backend!r} (for a server use teacher: openai)"
            )
        self.name = gen.model
        self._cfg = gen
        self._generator = generator if generator is not None else make_generator(gen)
        self._pending: list[tuple[str, asyncio.Future]] = []
        self._worker: asyncio.Task | None = None

    @property
    def tokenizer(self):
        return self._generator.tokenizer

    def prompt(self, messages: Messages) -> str:
        return chat_to_prompt(messages, self.tokenizer)

    def estimate_tokens(self, messages: Messages) -> int:
        # Budgets rarely matter for a local model; a rough count spares a second tokenisation.
        return rough_token_count(messages) + self._cfg.max_new_tokens

    async def complete(self, messages: Messages, seed: int | None = None) -> Answer:
        future = asyncio.get_running_loop().create_future()
        self._pending.append((self.prompt(messages), future))  # seed: see _run_batch
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        """Run queued prompts in batches until none are left."""
        while self._pending:
            await asyncio.sleep(0)  # let requests issued in the same tick join this batch
            batch = self._pending[: max(1, self._cfg.batch_size)]
            del self._pending[: len(batch)]
            try:
                answers = await asyncio.to_thread(self._run_batch, [p for p, _ in batch])
            except Exception as e:  # a crashed model fails every request waiting on it
                error = Fatal(f"local teacher {self.name!r} failed: {type(e).__name__}: {e}")
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, future), answer in zip(batch, answers, strict=True):
                if not future.done():
                    future.set_result(answer)

    def _run_batch(self, prompts: list[str]) -> list[Answer]:
        """One sampler call. Batches draw from the sampler's own seeded generator
        (`generator.seed`), not from per-request seeds, which a batch cannot honour."""
        from leanstar.generation import SamplingParams

        params = SamplingParams(
            n=1,
            temperature=self._cfg.temperature,
            top_p=self._cfg.top_p,
            max_new_tokens=self._cfg.max_new_tokens,
            stop=tuple(self._cfg.stop),
        )
        samples = self._generator.generate(prompts, params)
        tok = self.tokenizer
        return [
            Answer(
                text=group[0].text,
                prompt_tokens=len(tok(prompt, add_special_tokens=False).input_ids),
                completion_tokens=group[0].num_tokens,
                finish_reason=group[0].finish_reason,
            )
            for prompt, group in zip(prompts, samples, strict=True)
        ]

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self._generator.close()
