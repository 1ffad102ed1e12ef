"""Counts folded from trajectory digests: the numbers behind every table, plot and comparison.

A `Ledger` is additive: the index keeps one in SQLite (each batch of new records adds its
delta), a report over a subset folds its own in memory, and both feed the same summary and
comparison code, so a number means the same thing wherever it is shown.

Histograms are kept in fixed bins (thought length: 10 characters; proof length: 1 tactic), so
quantiles taken from them are exact for proof length and within one bin for thought length.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from leanstar.traces.digest import Digest

THOUGHT_BIN = 10  # characters per bin of the thought-length histograms

# Histogram metrics.
THOUGHT = "thought_chars"  # every sampled step that has a thought
PROOF_THOUGHT = "proof_thought_chars"  # the steps of proved attempts that advanced the proof
PROOF_LEN = "proof_len"  # tactics per proved attempt
BIN_WIDTH = {THOUGHT: THOUGHT_BIN, PROOF_THOUGHT: THOUGHT_BIN, PROOF_LEN: 1}

# Columns of a tactic's counters.
USES, FAILS, IN_PROOFS, WITH_THOUGHT, IN_PROOFS_WITH_THOUGHT = range(5)


@dataclass
class Cell:
    """One theorem in one round: what its attempts came to."""

    attempts: int = 0
    proved: int = 0
    proved_replay: int = 0  # proved attempts checked by replay, not by Lean
    rejected: int = 0
    errors: int = 0
    steps: int = 0  # sampled steps over all attempts, failed ones included
    best_len: int | None = None  # tactics in the shortest proof

    def add(self, d: Digest) -> None:
        self.attempts += 1
        self.steps += len(d.steps)
        self.rejected += d.outcome == "rejected"
        self.errors += d.outcome == "error"
        if d.proved:
            self.proved += 1
            self.proved_replay += d.replay
            self.best_len = _min(self.best_len, d.proof_len)

    def merge(self, o: Cell) -> None:
        self.attempts += o.attempts
        self.proved += o.proved
        self.proved_replay += o.proved_replay
        self.rejected += o.rejected
        self.errors += o.errors
        self.steps += o.steps
        self.best_len = _min(self.best_len, o.best_len)

    @property
    def status(self) -> str:
        return "proved" if self.proved else "failed"

    @property
    def replay_only(self) -> bool:
        """Every proof of this cell was checked by replay (none by Lean)."""
        return self.proved > 0 and self.proved_replay == self.proved


@dataclass
class Ledger:
    cells: dict[tuple[str, int], Cell] = field(default_factory=dict)
    splits: dict[str, str] = field(default_factory=dict)
    tactics: dict[tuple[int, str], list[int]] = field(default_factory=dict)
    errors: Counter = field(default_factory=Counter)  # (round, kind) -> steps
    hist: Counter = field(default_factory=Counter)  # (round, metric, bin) -> count
    sums: dict[tuple[int, str], list[float]] = field(default_factory=dict)  # -> [n, total]
    outcomes: Counter = field(default_factory=Counter)  # (round, outcome, replay) -> attempts
    checkers: Counter = field(default_factory=Counter)  # (round, checked_by) -> attempts
    no_thought_steps: Counter = field(default_factory=Counter)  # round -> steps without one

    def add(self, d: Digest) -> None:
        key = (d.theorem, d.round)
        self.cells.setdefault(key, Cell()).add(d)
        if d.split and d.theorem not in self.splits:
            self.splits[d.theorem] = d.split
        self.outcomes[(d.round, d.outcome, d.replay)] += 1
        self.checkers[(d.round, d.checked_by)] += 1
        for s in d.steps:
            self._add_step(d, s)
        if d.proved:
            self._observe(d.round, PROOF_LEN, d.proof_len)

    def _add_step(self, d: Digest, s) -> None:
        counts = self.tactics.setdefault((d.round, s.head), [0, 0, 0, 0, 0])
        counts[USES] += 1
        counts[FAILS] += not s.advancing
        in_proof = d.proved and s.advancing
        counts[IN_PROOFS] += in_proof
        if s.thought_chars is None:
            self.no_thought_steps[d.round] += 1
        else:
            counts[WITH_THOUGHT] += 1
            counts[IN_PROOFS_WITH_THOUGHT] += in_proof
            self._observe(d.round, THOUGHT, s.thought_chars)
            if in_proof:
                self._observe(d.round, PROOF_THOUGHT, s.thought_chars)
        if s.error is not None:
            self.errors[(d.round, s.error)] += 1

    def _observe(self, rnd: int, metric: str, value: int) -> None:
        self.hist[(rnd, metric, value // BIN_WIDTH[metric])] += 1
        acc = self.sums.setdefault((rnd, metric), [0, 0])
        acc[0] += 1
        acc[1] += value

    def merge(self, o: Ledger) -> None:
        for key, cell in o.cells.items():
            self.cells.setdefault(key, Cell()).merge(cell)
        for name, split in o.splits.items():
            self.splits.setdefault(name, split)
        for key, counts in o.tactics.items():
            mine = self.tactics.setdefault(key, [0, 0, 0, 0, 0])
            for i, n in enumerate(counts):
                mine[i] += n
        for key, (n, total) in o.sums.items():
            acc = self.sums.setdefault(key, [0, 0])
            acc[0] += n
            acc[1] += total
        self.errors.update(o.errors)
        self.hist.update(o.hist)
        self.outcomes.update(o.outcomes)
        self.checkers.update(o.checkers)
        self.no_thought_steps.update(o.no_thought_steps)

    # -- reading ----------------------------------------------------------------
    def rounds(self) -> list[int]:
        return sorted({r for _, r in self.cells})

    def theorems(self) -> list[str]:
        return sorted({t for t, _ in self.cells})

    def restricted(self, rounds: Iterable[int]) -> Ledger:
        """The same counts for the given rounds only."""
        keep = set(rounds)
        out = Ledger(splits=dict(self.splits))
        out.cells = {k: v for k, v in self.cells.items() if k[1] in keep}
        out.tactics = {k: v for k, v in self.tactics.items() if k[0] in keep}
        out.errors = Counter({k: v for k, v in self.errors.items() if k[0] in keep})
        out.hist = Counter({k: v for k, v in self.hist.items() if k[0] in keep})
        out.sums = {k: v for k, v in self.sums.items() if k[0] in keep}
        out.outcomes = Counter({k: v for k, v in self.outcomes.items() if k[0] in keep})
        out.checkers = Counter({k: v for k, v in self.checkers.items() if k[0] in keep})
        out.no_thought_steps = Counter(
            {k: v for k, v in self.no_thought_steps.items() if k in keep}
        )
        return out

    def proved(self, rounds: Iterable[int] | None = None) -> set[str]:
        keep = None if rounds is None else set(rounds)
        return {t for (t, r), c in self.cells.items() if c.proved and (keep is None or r in keep)}

    def attempted(self, rounds: Iterable[int] | None = None) -> set[str]:
        keep = None if rounds is None else set(rounds)
        return {t for (t, r) in self.cells if keep is None or r in keep}

    def histogram(self, metric: str, rounds: Iterable[int] | None = None) -> Counter:
        """bin -> count for `metric`, summed over `rounds` (all when None)."""
        keep = None if rounds is None else set(rounds)
        out: Counter = Counter()
        for (r, m, b), n in self.hist.items():
            if m == metric and (keep is None or r in keep):
                out[b] += n
        return out

    def mean(self, metric: str, rounds: Iterable[int] | None = None) -> float | None:
        keep = None if rounds is None else set(rounds)
        n = total = 0
        for (r, m), (count, value) in self.sums.items():
            if m == metric and (keep is None or r in keep):
                n += count
                total += value
        return total / n if n else None

    def tactic_totals(self, rounds: Iterable[int] | None = None) -> dict[str, list[int]]:
        keep = None if rounds is None else set(rounds)
        out: dict[str, list[int]] = {}
        for (r, head), counts in self.tactics.items():
            if keep is None or r in keep:
                mine = out.setdefault(head, [0, 0, 0, 0, 0])
                for i, n in enumerate(counts):
                    mine[i] += n
        return out

    def error_totals(self, rounds: Iterable[int] | None = None) -> Counter:
        keep = None if rounds is None else set(rounds)
        out: Counter = Counter()
        for (r, kind), n in self.errors.items():
            if keep is None or r in keep:
                out[kind] += n
        return out


def quantile(hist: Counter, q: float, width: int) -> float | None:
    """The q-quantile of a binned histogram: the middle of the bin holding it (exact when
    `width` is 1)."""
    total = sum(hist.values())
    if not total:
        return None
    rank, seen = q * (total - 1), 0
    for b in sorted(hist):
        seen += hist[b]
        if seen > rank:
            return float(b) if width == 1 else b * width + (width - 1) / 2
    return float(max(hist)) * width


def _min(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else min(a, b)
