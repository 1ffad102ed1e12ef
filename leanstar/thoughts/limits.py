"""Request and token budgets per minute, and the backoff between retries.

`Budget` is two token buckets (requests, tokens) refilled continuously; each holds at most
one second of its rate, so no minute ever sees much more than the budget. A request takes its
*estimated* tokens before it is sent and `settle`s to the real count when the answer says it;
the bucket may go below zero then, which delays the next requests by exactly the overdraft.
A rate-limit answer from the server `pause`s everyone, not only the request that got it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable


class Bucket:
    def __init__(self, per_minute: float, now: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self.level = self.capacity
        self._stamp = now

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self._stamp) * self.rate)
        self._stamp = now

    def wait_for(self, amount: float) -> float:
        """Seconds until `amount` can be taken (0 if now). Amounts over capacity wait for a
        full bucket, so one large request is never blocked forever."""
        need = min(amount, self.capacity) - self.level
        return 0.0 if need <= 1e-6 else need / self.rate  # rounding must not spin the loop


class Budget:
    """Requests-per-minute and tokens-per-minute budgets; 0 means unlimited."""

    def __init__(
        self,
        requests_per_minute: float = 0.0,
        tokens_per_minute: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._clock, self._sleep = clock, sleep
        now = clock()
        self._requests = Bucket(requests_per_minute, now) if requests_per_minute > 0 else None
        self._tokens = Bucket(tokens_per_minute, now) if tokens_per_minute > 0 else None
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    @property
    def unlimited(self) -> bool:
        return self._requests is None and self._tokens is None

    async def acquire(self, tokens: int) -> None:
        """Wait until one request of about `tokens` tokens fits the budgets, then take it."""
        if self.unlimited and self._clock() >= self._paused_until:
            return
        async with self._lock:  # first come, first served
            while True:
                now = self._clock()
                wait = self._paused_until - now
                for bucket, amount in ((self._requests, 1), (self._tokens, tokens)):
                    if bucket is not None:
                        bucket.refill(now)
                        wait = max(wait, bucket.wait_for(amount))
                if wait <= 0:
                    break
                await self._sleep(wait)
            if self._requests is not None:
                self._requests.level -= 1
            if self._tokens is not None:
                self._tokens.level -= tokens

    def settle(self, estimated: int, actual: int) -> None:
        """Correct the token bucket once a request's real token count is known."""
        if self._tokens is not None:
            self._tokens.level += estimated - actual

    def pause(self, seconds: float) -> None:
        """Hold every request for `seconds` (the server asked us to slow down)."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)


def backoff_delay(
    attempt: int,
    base_s: float,
    max_s: float,
    retry_after_s: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before retry number `attempt` (0-based): the server's Retry-After when
    it gave one, else base * 2**attempt, capped; either way jittered so that requests which
    failed together do not come back together."""
    rng = rng or random
    if retry_after_s is not None:
        return min(max_s, retry_after_s) * (1.0 + 0.25 * rng.random())
    return min(max_s, base_s * 2.0**attempt) * (0.5 + rng.random())
