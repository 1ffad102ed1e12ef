"""LeanDojo Benchmark 4 traces: theorems with their ground-truth tactics and proof states.

A file is a JSON list of theorems with `url, commit, file_path, full_name, start, end,
traced_tactics[{tactic, annotated_tactic, state_before, state_after}]` (Yang et al. 2023).
`sample_pairs` draws (state, tactic) pairs the way Lean-STaR did for thought synthesis: at most
N theorems per file and M tactics per theorem, seeded.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from leanstar.data.bundled import resolve
from leanstar.records import Theorem, TracedStep

REQUIRED = ("url", "commit", "file_path", "full_name", "traced_tactics")
STEP_FIELDS = ("tactic", "state_before", "state_after")


class LeanDojoFormatError(ValueError):
    """A LeanDojo file that does not have the Benchmark 4 shape; names the file and entry."""


@dataclass(frozen=True)
class LeanDojoTheorem:
    full_name: str
    file_path: str
    url: str
    commit: str
    steps: tuple[TracedStep, ...]

    @property
    def initial_state(self) -> str | None:
        return self.steps[0].state_before if self.steps else None

    def as_theorem(self, split: str = "") -> Theorem:
        """A Theorem record for search. LeanDojo records carry no statement text, so the
        statement is empty and the initial goal stands in for it; backends that need the
        statement (the REPL) cannot start these, LeanDojo and the replay environment can."""
        return Theorem(
            name=self.full_name,
            statement="",
            split=split,
            source=f"leandojo:{self.url}@{self.commit}",
            goal=self.initial_state,
            file_path=self.file_path,
        )


def load_leandojo(path: str | Path) -> list[LeanDojoTheorem]:
    """Read a LeanDojo Benchmark 4 JSON file (or `bundled:NAME`)."""
    path = resolve(str(path))
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise LeanDojoFormatError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(data, list):
        raise LeanDojoFormatError(f"{path}: expected a JSON list of theorems")
    return [_theorem(entry, path, i) for i, entry in enumerate(data)]


def _theorem(entry: object, path: Path, i: int) -> LeanDojoTheorem:
    where = f"{path}: theorem #{i}"
    if not isinstance(entry, dict):
        raise LeanDojoFormatError(f"{where}: expected an object")
    missing = [k for k in REQUIRED if k not in entry]
    if missing:
        raise LeanDojoFormatError(f"{where}: missing field(s) {missing}")
    name = entry["full_name"]
    steps = []
    for j, tac in enumerate(entry["traced_tactics"]):
        absent = [k for k in STEP_FIELDS if not isinstance(tac.get(k), str)]
        if absent:
            raise LeanDojoFormatError(
                f"{where} ({name}): traced_tactics[{j}]: missing or non-string {absent}"
            )
        steps.append(
            TracedStep(
                theorem=name,
                file_path=entry["file_path"],
                index=j,
                state_before=tac["state_before"],
                tactic=tac["tactic"],
                state_after=tac["state_after"],
                url=entry["url"],
                commit=entry["commit"],
            )
        )
    return LeanDojoTheorem(name, entry["file_path"], entry["url"], entry["commit"], tuple(steps))


def traced_steps(theorems: list[LeanDojoTheorem]) -> list[TracedStep]:
    return [step for thm in theorems for step in thm.steps]


def sample_pairs(
    theorems: list[LeanDojoTheorem], per_file: int = 5, per_theorem: int = 4, seed: int = 0
) -> list[TracedStep]:
    """At most `per_file` theorems of each file and `per_theorem` tactics of each theorem
    (Lean-STaR: 5 and 4), chosen at random with `seed`; the order is deterministic."""
    rng = random.Random(seed)
    by_file: dict[str, list[LeanDojoTheorem]] = defaultdict(list)
    for thm in theorems:
        if thm.steps:
            by_file[thm.file_path].append(thm)
    out: list[TracedStep] = []
    for file_path in sorted(by_file):
        group = by_file[file_path]
        chosen = rng.sample(group, min(per_file, len(group)))
        for thm in sorted(chosen, key=lambda t: t.full_name):
            picks = rng.sample(range(len(thm.steps)), min(per_theorem, len(thm.steps)))
            out.extend(thm.steps[j] for j in sorted(picks))
    return out
