"""Where a search's wall time goes: the sampler busy, Lean busy, both, or neither.

The runner's event loop reports each sampler call and each Lean call as it starts and ends;
`Meter` integrates, over wall time, how many of each were in flight. "Idle" is the time when
neither the sampler nor any Lean call had work: time the runner itself (bookkeeping, waiting
for a batch to fill) held everything up. All timestamps come from one monotonic clock, and
every update happens on the event loop's thread, so no locking is needed.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass


@dataclass
class Usage:
    wall_s: float = 0.0
    sampler_busy_s: float = 0.0  # a sampler call in flight
    lean_busy_s: float = 0.0  # at least one Lean call in flight
    lean_inflight_s: float = 0.0  # integral of Lean calls in flight (mean = this / wall)
    idle_s: float = 0.0  # neither the sampler nor Lean had work
    sampler_calls: int = 0
    prompts: int = 0  # prompts over all sampler calls
    samples: int = 0  # completions over all sampler calls (prompts x n)
    max_prompts: int = 0
    lean_calls: int = 0  # start, run_tactic and verify calls
    tactics: int = 0  # run_tactic calls

    def add(self, other: Usage) -> Usage:
        """The sum of two nodes' usages; wall times add up too, so the utilisations of the sum
        are averages over the nodes."""
        out = Usage(**{k: v + getattr(other, k) for k, v in asdict(self).items()})
        out.max_prompts = max(self.max_prompts, other.max_prompts)
        return out

    def to_dict(self) -> dict:
        wall = self.wall_s or float("inf")
        calls = self.sampler_calls or 1
        return {
            **{k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()},
            "sampler_utilisation": round(self.sampler_busy_s / wall, 4),
            "lean_utilisation": round(self.lean_busy_s / wall, 4),
            "mean_lean_inflight": round(self.lean_inflight_s / wall, 3),
            "idle_share": round(self.idle_s / wall, 4),
            "mean_batch_prompts": round(self.prompts / calls, 2),
            "mean_batch_samples": round(self.samples / calls, 2),
        }


class Meter:
    def __init__(self, clock=time.perf_counter) -> None:
        self._clock = clock
        self._start = self._last = clock()
        self._sampler = 0
        self._lean = 0
        self.usage = Usage()

    def _advance(self) -> None:
        now = self._clock()
        dt, self._last = now - self._last, now
        u = self.usage
        if self._sampler:
            u.sampler_busy_s += dt
        if self._lean:
            u.lean_busy_s += dt
            u.lean_inflight_s += dt * self._lean
        if not self._sampler and not self._lean:
            u.idle_s += dt

    def sampler_start(self, prompts: int, samples: int) -> None:
        self._advance()
        self._sampler += 1
        u = self.usage
        u.sampler_calls += 1
        u.prompts += prompts
        u.samples += samples
        u.max_prompts = max(u.max_prompts, prompts)

    def sampler_end(self) -> None:
        self._advance()
        self._sampler -= 1

    def lean_start(self, tactic: bool = False) -> None:
        self._advance()
        self._lean += 1
        self.usage.lean_calls += 1
        self.usage.tactics += tactic

    def lean_end(self) -> None:
        self._advance()
        self._lean -= 1

    def snapshot(self) -> Usage:
        self._advance()
        self.usage.wall_s = self._last - self._start
        return Usage(**asdict(self.usage))
