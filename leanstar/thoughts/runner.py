"""Many teacher requests at once: a fixed pool of workers, retries with backoff, budgets.

`run_jobs` starts `concurrency` workers that pull jobs from one shared iterator (so each job
goes to exactly one worker and at most `concurrency` requests are ever in flight) and hand each
result to a callback as soon as it arrives: the driver writes it to disk there, so a kill loses
only requests still in the air. `ask` is one job's life: budget, request, and on a retryable
failure a jittered exponential backoff, each retry counted by kind in the `Tally`.
"""

from __future__ import annotations

import asyncio
import collections
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from leanstar.thoughts.limits import Budget, backoff_delay
from leanstar.thoughts.teacher import Answer, Messages, Refused, Retryable, Teacher

J = TypeVar("J")


@dataclass(frozen=True)
class Failure:
    """No usable answer: `kind` of the last error, its message, and requests made."""

    kind: str
    error: str
    attempts: int


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 6
    base_s: float = 1.0
    max_s: float = 60.0


@dataclass
class Tally:
    """Counts of this process's requests (the summary adds what earlier runs stored)."""

    answered: int = 0
    failed: int = 0
    requests: int = 0
    retries: collections.Counter = field(default_factory=collections.Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add_answer(self, answer: Answer) -> None:
        self.answered += 1
        self.prompt_tokens += answer.prompt_tokens
        self.completion_tokens += answer.completion_tokens


async def ask(
    teacher: Teacher,
    messages: Messages,
    seed: int | None,
    budget: Budget,
    policy: RetryPolicy,
    tally: Tally,
    rng: random.Random,
) -> Answer | Failure:
    """One request, retried on retryable errors until it answers or the retries run out."""
    estimate = teacher.estimate_tokens(messages)
    for attempt in range(policy.max_retries + 1):
        await budget.acquire(estimate)
        tally.requests += 1
        try:
            answer = await teacher.complete(messages, seed)
        except Retryable as e:
            budget.settle(estimate, 0)
            if e.kind == "rate_limit" and e.retry_after_s:
                budget.pause(e.retry_after_s)
            if attempt == policy.max_retries:
                return Failure(e.kind, str(e), attempt + 1)
            tally.retries[e.kind] += 1
            await asyncio.sleep(
                backoff_delay(attempt, policy.base_s, policy.max_s, e.retry_after_s, rng)
            )
            continue
        except Refused as e:
            budget.settle(estimate, 0)
            return Failure("refused", str(e), attempt + 1)
        budget.settle(estimate, answer.prompt_tokens + answer.completion_tokens)
        tally.add_answer(answer)
        return answer
    raise AssertionError("unreachable: the loop returns on its last attempt")


async def run_jobs(
    jobs: Iterable[J],
    concurrency: int,
    request: Callable[[J], Awaitable[Answer | Failure]],
    on_result: Callable[[J, Answer | Failure], None],
) -> None:
    """Run `request(job)` for every job, at most `concurrency` at once, calling `on_result` as
    each finishes. The first exception (e.g. `Fatal`) cancels the other workers and is raised."""
    iterator = iter(jobs)

    async def worker() -> None:
        for job in iterator:  # the shared iterator hands each job to one worker
            on_result(job, await request(job))

    tasks = [asyncio.create_task(worker()) for _ in range(max(1, concurrency))]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                raise task.exception()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
