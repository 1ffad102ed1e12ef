"""A search node: one sampler and one environment proving many theorems at once.

`concurrent_theorems` theorems are live at a time, each with all its remaining attempts running
side by side, so the batcher sees requests from every live attempt and no attempt waits on
another's Lean call. A theorem is started once; its attempts share the (immutable) first state
and one time budget. Each finished attempt is handed to `emit` at once: the local runner writes
it to disk, a Ray worker sends it back to the driver.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable

from leanstar.generation.base import Generator
from leanstar.lean.env import ProofEnv, ProofState, message_of, outcome_of
from leanstar.records import Theorem, Trajectory, TrajectoryOutcome
from leanstar.search.batcher import Batcher
from leanstar.search.best_first import best_first_attempt
from leanstar.search.config import SearchConfig
from leanstar.search.context import Recorder, SearchContext
from leanstar.search.meter import Meter, Usage
from leanstar.search.sampling import sampling_attempt

Emit = Callable[[Trajectory], None]
ATTEMPTS = {"sampling": sampling_attempt, "best_first": best_first_attempt}


class SearchNode:
    def __init__(
        self,
        cfg: SearchConfig,
        generator: Generator,
        env: ProofEnv,
        round: int = 0,
    ) -> None:
        self.cfg = cfg
        self.meter = Meter()
        self.batcher = Batcher(generator, self.meter, cfg.generator.batch_size, cfg.batch_wait_s)
        tokenizer = getattr(generator, "tokenizer", None)
        self.ctx = SearchContext(cfg, env, self.batcher, self.meter, tokenizer, round)
        self._attempt = ATTEMPTS[cfg.strategy]

    async def prove_all(self, work: Iterable[tuple[Theorem, list[int]]], emit: Emit) -> None:
        """Prove each (theorem, attempt numbers) of `work`, `concurrent_theorems` at a time."""
        queue = list(work)[::-1]

        async def worker() -> None:
            while queue:
                theorem, attempts = queue.pop()
                await self.prove(theorem, attempts, emit)

        await gather_or_cancel(worker() for _ in range(max(1, self.cfg.concurrent_theorems)))

    async def prove(self, theorem: Theorem, attempts: list[int], emit: Emit) -> None:
        deadline = time.perf_counter() + self.cfg.theorem_time_s
        root, _ = await self.ctx.start(theorem)
        if not isinstance(root, ProofState):
            reason = f"could not start the theorem ({outcome_of(root).value}): {message_of(root)}"
            for attempt in attempts:
                rec = Recorder(self.ctx, theorem, attempt, self.cfg.strategy)
                emit(rec.finish(TrajectoryOutcome.ERROR, reason))
            return

        async def one(attempt: int) -> None:
            self.batcher.join()
            try:
                trajectory = await self._attempt(self.ctx, theorem, root, attempt, deadline)
            finally:
                self.batcher.leave()
            emit(trajectory)

        await gather_or_cancel(one(a) for a in attempts)

    def usage(self) -> Usage:
        return self.meter.snapshot()

    async def close(self) -> None:
        await self.batcher.close()


async def gather_or_cancel(coros: Iterable[Awaitable[None]]) -> None:
    """Run all; if one fails (or we are cancelled), cancel the others before raising."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
