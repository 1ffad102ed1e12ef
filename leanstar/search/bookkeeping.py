"""Bookkeeping of one search: each finished attempt written and shown, and the summary.

The summary counts everything in `trajectories.jsonl` (earlier sessions included), and adds
what this session did: attempts, steps, wall time and where the wall time went (`Usage`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from leanstar.jsonl import write_json_atomic
from leanstar.records import Trajectory
from leanstar.search import store
from leanstar.search.meter import Usage
from leanstar.search.progress import SearchProgress, notice

REFRESH_S = 0.5


@dataclass(frozen=True)
class SearchSummary:
    """Counts over everything in the run directory, and what this session did."""

    run_dir: str
    strategy: str
    checked_by: str
    model: str
    theorems: int  # theorems searched (after split, limit and the startable filter)
    attempts_per_theorem: int
    trajectories: int  # records in trajectories.jsonl
    outcomes: dict[str, int]
    theorems_proved: int
    complete: bool  # every (theorem, attempt) is written
    skipped: dict[str, str] = field(default_factory=dict)  # theorem -> why it was not searched
    session: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Bookkeeper:
    """Writes each finished attempt, shows progress, and sums up."""

    def __init__(self, cfg, rd, theorems, work, written, writer, progress) -> None:
        self.cfg, self.rd, self.theorems = cfg, rd, theorems
        self.written, self.writer = written, writer
        self.todo = sum(len(a) for _, a in work)
        self.new = self.steps = 0
        self.started = time.perf_counter()
        self.progress = SearchProgress(self.todo, len(work), progress)
        for thm, attempts in work:
            self.progress.expect(thm.name, len(attempts))
        done = len(theorems) * cfg.attempts - self.todo
        if done:
            notice(f"resuming: {done} attempts already in {rd / store.TRAJECTORIES}")

    def emit(self, t: Trajectory) -> None:
        self.writer.write(t)
        self.written.add(t.theorem, t.attempt, t.outcome.value, t.checked_by)
        self.new += 1
        self.steps += len(t.steps)
        self.progress.finished(t)

    async def drive(self, work, usage: Callable[[], Any]) -> None:
        """Run `work` while refreshing the progress line from `usage()`."""
        task = asyncio.ensure_future(work)
        with self.progress:
            while not task.done():
                await asyncio.wait([task], timeout=REFRESH_S)
                shown = usage()
                self.progress.show(await shown if asyncio.iscoroutine(shown) else shown)
            await task

    def finish(
        self, label: str, skipped: dict[str, str], usage: Usage, lean_events: dict | None = None
    ) -> SearchSummary:
        """The summary, written to the run directory. `lean_events`: what the REPL pool counted
        during this run (requests, restarts and why, rebuilt states, replayed tactics)."""
        cfg, w = self.cfg, self.written
        names = {t.name for t in self.theorems}
        wall = time.perf_counter() - self.started
        complete = all((t.name, a) in w.keys for t in self.theorems for a in range(cfg.attempts))
        summary = SearchSummary(
            run_dir=str(self.rd.path),
            strategy=cfg.strategy,
            checked_by=label,
            model=cfg.generator.model,
            theorems=len(self.theorems),
            attempts_per_theorem=cfg.attempts,
            trajectories=len(w.keys),
            outcomes=dict(w.outcomes),
            theorems_proved=len(w.proved & names),
            complete=complete,
            skipped=skipped,
            session={
                "attempts": self.new,
                "steps": self.steps,
                "wall_s": round(wall, 3),
                "steps_per_s": round(self.steps / wall, 2) if wall > 0 else 0.0,
                **usage.to_dict(),
                **({"lean_pool": dict(lean_events)} if lean_events else {}),
            },
        )
        write_json_atomic(self.rd / store.SUMMARY, summary.to_dict())
        if complete:
            self.rd.mark_done("search", proved=summary.theorems_proved, theorems=len(names))
        return summary


def describe(s: SearchSummary) -> str:
    label = f" [{s.checked_by}]" if "not checked by Lean" in s.checked_by else ""
    rate = s.theorems_proved / s.theorems if s.theorems else 0.0
    outcomes = ", ".join(f"{v} {k}" for k, v in s.outcomes.items() if v)
    u = s.session
    lines = [
        f"{s.strategy} search, {s.theorems} theorems x {s.attempts_per_theorem} attempts, "
        f"checked by {s.checked_by}, model {s.model}",
        f"proved {s.theorems_proved}/{s.theorems} theorems ({100 * rate:.1f}%){label}; "
        f"attempts: {outcomes or 'none'}",
    ]
    if s.skipped:
        lines.append(f"skipped {len(s.skipped)} theorems (see summary.json)")
    if u.get("attempts"):
        lines.append(
            f"this session: {u['attempts']} attempts, {u['steps']} steps in {u['wall_s']:.1f} s "
            f"({u['steps_per_s']:.1f} steps/s); sampler busy {100 * u['sampler_utilisation']:.0f}%"
            f" (mean batch {u['mean_batch_prompts']:.1f} prompts), Lean busy "
            f"{100 * u['lean_utilisation']:.0f}%, both idle {100 * u['idle_share']:.1f}%"
        )
    pool = u.get("lean_pool", {})
    if pool.get("restarts") or pool.get("rebuilds"):
        g = pool.get
        recycled = g("recycled_commands", 0) + g("recycled_memory", 0)
        lines.append(
            f"Lean processes: {g('restarts', 0)} restarts ({g('timeouts', 0)} timeouts, "
            f"{g('crashes', 0)} crashes, {recycled} recycled), {g('rebuilds', 0)} lost states "
            f"rebuilt ({g('replayed_tactics', 0)} tactics replayed), {g('requests', 0)} requests"
        )
    if not s.complete:
        lines.append("incomplete: run the same command again to resume")
    lines.append(f"trajectories: {s.run_dir}/{store.TRAJECTORIES}")
    return "\n".join(lines)
