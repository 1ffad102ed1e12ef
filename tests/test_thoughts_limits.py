"""Request/token budgets (on a simulated clock, so no test waits) and retry backoff."""

import asyncio
import random

import pytest

from leanstar.thoughts.limits import Budget, backoff_delay


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now

    async def sleep(self, seconds):
        self.now += seconds
        await asyncio.sleep(0)


def acquire_times(budget, clock, tokens):
    async def go():
        times = []
        for n in tokens:
            await budget.acquire(n)
            times.append(clock.now)
        return times

    return asyncio.run(go())


def max_in_window(times, window):
    return max(sum(1 for u in times if t <= u < t + window) for t in times)


def test_requests_per_minute():
    clock = FakeClock()
    budget = Budget(requests_per_minute=600, clock=clock, sleep=clock.sleep)  # 10 per second
    times = acquire_times(budget, clock, [1] * 100)
    assert times[-1] - times[0] == pytest.approx(9.0, rel=0.02)  # the first 10 go at once
    assert max_in_window(times, 1.0) <= 20  # capacity (one second) + one second of rate
    assert max_in_window(times, 60.0) <= 600


def test_tokens_per_minute_with_settling():
    clock = FakeClock()
    budget = Budget(tokens_per_minute=6000, clock=clock, sleep=clock.sleep)  # 100 per second

    async def go():
        for _ in range(20):
            await budget.acquire(50)  # estimate
            budget.settle(50, 100)  # the answer used twice the estimate
        return clock.now

    # 20 requests of 100 real tokens = 2000 tokens = 20 s at 100 tokens/s, less the first 100.
    assert asyncio.run(go()) - 100.0 == pytest.approx(19.0, abs=1.0)


def test_a_request_larger_than_the_bucket_still_goes():
    clock = FakeClock()
    budget = Budget(tokens_per_minute=60, clock=clock, sleep=clock.sleep)  # bucket of 1 token
    times = acquire_times(budget, clock, [500, 500])
    assert len(times) == 2  # no deadlock; the overdraft delays the second
    assert times[1] - times[0] >= 499


def test_pause_holds_everyone():
    clock = FakeClock()
    budget = Budget(clock=clock, sleep=clock.sleep)
    assert budget.unlimited
    budget.pause(2.5)
    times = acquire_times(budget, clock, [1, 1])
    assert times == [102.5, 102.5]


def test_unlimited_budget_never_waits():
    clock = FakeClock()
    budget = Budget(clock=clock, sleep=clock.sleep)
    assert acquire_times(budget, clock, [10**9] * 5) == [100.0] * 5


def test_backoff_doubles_with_jitter_and_caps():
    rng = random.Random(0)
    for attempt in range(8):
        delay = backoff_delay(attempt, base_s=1.0, max_s=30.0, rng=rng)
        nominal = min(30.0, 2.0**attempt)
        assert 0.5 * nominal <= delay <= 1.5 * nominal
    delays = {backoff_delay(3, 1.0, 30.0, rng=rng) for _ in range(20)}
    assert len(delays) == 20  # jittered: requests that failed together come back apart


def test_backoff_honours_retry_after():
    rng = random.Random(0)
    for _ in range(20):
        assert 4.0 <= backoff_delay(0, 1.0, 60.0, retry_after_s=4.0, rng=rng) <= 5.0
    assert backoff_delay(0, 1.0, 10.0, retry_after_s=3600, rng=rng) <= 12.5
