"""The progress bar of a synthesis run: pairs done, rate, ETA, tokens, cost, outcomes."""

from __future__ import annotations

from dataclasses import dataclass

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


@dataclass(frozen=True)
class Prices:
    """US dollars per million tokens."""

    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (
            prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok
        ) / 1e6


class RateColumn(ProgressColumn):
    """Pairs per second over the run so far (rich's own speed column is a short window)."""

    def render(self, task) -> Text:
        elapsed = task.elapsed or 0.0
        rate = task.completed / elapsed if elapsed > 0 else 0.0
        return Text(f"{rate:6.1f} pairs/s", style="progress.data.speed")


def make_progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]thoughts"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        disable=not enabled,
        transient=False,
    )


def info_line(
    accepted: int,
    rejected: int,
    failed: int,
    retries: int,
    prompt_tokens: int,
    completion_tokens: int,
    prices: Prices,
) -> str:
    tokens = prompt_tokens + completion_tokens
    cost = prices.cost(prompt_tokens, completion_tokens)
    return (
        f"ok {accepted} · rejected {rejected} · failed {failed} · retries {retries} · "
        f"{_si(tokens)} tok · ${cost:.4f}"
    )


def _si(n: int) -> str:
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(n)
