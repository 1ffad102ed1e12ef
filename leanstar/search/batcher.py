"""One sampler shared by every live search: requests from all of them go out in batches.

Each search awaits `sample(prompt, params)`; the batcher gathers pending requests and hands
them to `Generator.generate` in one call, on a worker thread, so the event loop keeps serving
Lean answers while the model samples. One call is in flight at a time (one model, one device);
requests that arrive meanwhile make up the next batch. While the sampler is idle, a batch goes
out as soon as it is full (`max_prompts`), or every registered search is waiting on the
sampler (no one else can join), or its oldest request has waited `max_wait_s` (counted from
when the sampler last became free, so searches just answered can join).

A generator error fails every request of its batch: the searches stop and the runner reports
it; nothing is silently scored as a failed proof.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from leanstar.generation.base import Generator, Sample, SamplingParams
from leanstar.search.meter import Meter


@dataclass
class _Request:
    prompt: str
    params: SamplingParams
    future: asyncio.Future
    at: float = field(default_factory=time.perf_counter)


class Batcher:
    def __init__(
        self, generator: Generator, meter: Meter, max_prompts: int, max_wait_s: float
    ) -> None:
        self.generator = generator
        self.meter = meter
        self.max_prompts = max(1, max_prompts)
        self.max_wait_s = max_wait_s
        self._pending: list[_Request] = []
        self._clients = 0
        self._free_at = 0.0  # when the last sampler call returned
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sampler")

    # -- the searches' side -------------------------------------------------
    def join(self) -> None:
        """A search that will send requests; `leave` when it is done."""
        self._clients += 1

    def leave(self) -> None:
        self._clients -= 1
        self._poke()

    async def sample(self, prompt: str, params: SamplingParams) -> list[Sample]:
        self._ensure_running()
        request = _Request(prompt, params, asyncio.get_running_loop().create_future())
        self._pending.append(request)
        self._poke()
        return await request.future

    # -- the batching loop --------------------------------------------------
    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._loop())

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _ready(self) -> float | None:
        """0 if a batch should go now, else seconds until the oldest request's wait ends
        (None: nothing pending)."""
        if not self._pending:
            return None
        if len(self._pending) >= self.max_prompts or len(self._pending) >= self._clients:
            return 0.0
        # Requests that waited through a sampler call get a fresh window, so the searches that
        # call just answered can still join the next batch.
        since = max(self._pending[0].at, self._free_at)
        return max(0.0, since + self.max_wait_s - time.perf_counter())

    async def _loop(self) -> None:
        while True:
            delay = self._ready()
            if delay == 0.0:
                await self._run_batch()
                continue
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)

    def _take_batch(self) -> list[_Request]:
        self._pending = [r for r in self._pending if not r.future.done()]  # drop cancelled
        if not self._pending:
            return []
        params = self._pending[0].params  # oldest first; same-params requests ride along
        batch = [r for r in self._pending if r.params == params][: self.max_prompts]
        taken = {id(r) for r in batch}
        self._pending = [r for r in self._pending if id(r) not in taken]
        return batch

    async def _run_batch(self) -> None:
        batch = self._take_batch()
        if not batch:
            return
        params = batch[0].params
        prompts = [r.prompt for r in batch]
        loop = asyncio.get_running_loop()
        self.meter.sampler_start(len(prompts), len(prompts) * params.n)
        try:
            results = await loop.run_in_executor(
                self._thread, self.generator.generate, prompts, params
            )
            if len(results) != len(batch):
                raise RuntimeError(
                    f"generator {self.generator.name!r} answered {len(results)} prompts of "
                    f"{len(batch)}"
                )
        except asyncio.CancelledError:
            for r in batch:
                r.future.cancel()
            raise
        except Exception as e:
            for r in batch:
                if not r.future.done():
                    r.future.set_exception(e)
            return
        finally:
            self.meter.sampler_end()
            self._free_at = time.perf_counter()
        for r, samples in zip(batch, results):
            if not r.future.done():  # its search may have been cancelled meanwhile
                r.future.set_result(samples)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        self._thread.shutdown(wait=False)
