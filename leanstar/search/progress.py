"""The live progress line of a search: attempts done, theorems proved, tactics per second, and
how busy the sampler and Lean are (the two things a search should keep busy)."""

from __future__ import annotations

import sys
from collections import Counter

from leanstar.records import Trajectory
from leanstar.search.meter import Usage


class SearchProgress:
    def __init__(self, total_attempts: int, theorems: int, enabled: bool | None = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = Console(stderr=True)
        enabled = self.console.is_terminal if enabled is None else enabled
        self._bar = Progress(
            TextColumn("[bold]search"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[stats]}"),
            console=self.console,
            disable=not enabled,
        )
        self._task = self._bar.add_task("search", total=total_attempts, stats="")
        self.theorems = theorems
        self.done_theorems: set[str] = set()
        self.proved: set[str] = set()
        self._left: Counter[str] = Counter()

    def expect(self, theorem: str, attempts: int) -> None:
        self._left[theorem] += attempts

    def __enter__(self) -> SearchProgress:
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()

    def finished(self, trajectory: Trajectory) -> None:
        self._left[trajectory.theorem] -= 1
        if self._left[trajectory.theorem] <= 0:
            self.done_theorems.add(trajectory.theorem)
        if trajectory.proved:
            self.proved.add(trajectory.theorem)
        self._bar.advance(self._task)

    def show(self, usage: Usage) -> None:
        wall = usage.wall_s or 1e-9
        batch = usage.prompts / usage.sampler_calls if usage.sampler_calls else 0.0
        stats = (
            f"{len(self.proved)} proved · {len(self.done_theorems)}/{self.theorems} theorems · "
            f"{usage.tactics / wall:.1f} tactics/s · sampler {100 * usage.sampler_busy_s / wall:.0f}%"
            f" (batch {batch:.0f}) · Lean {100 * usage.lean_busy_s / wall:.0f}%"
        )
        self._bar.update(self._task, stats=stats)

    def note(self, text: str) -> None:
        self.console.print(text, highlight=False)


def notice(text: str) -> None:
    """A one-line notice on stderr (outside any progress display)."""
    print(f"leanstar search: {text}", file=sys.stderr)
