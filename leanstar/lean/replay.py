"""The replay environment: a `ProofEnv` that answers from recorded LeanDojo states.

For a theorem whose traced tactics were recorded, `start` gives the recorded first state, and a
tactic that matches (after whitespace normalisation) a recorded tactic from the current state
gives the recorded state after it. Any other tactic gets `UnknownToReplay`: Lean was never
asked, so it is neither an error nor a success. A proof "verified" here has only retraced a
recorded path; everything it produces is labelled `REPLAY_LABEL`, "replay (not checked by
Lean)". It exists for tests and the offline demo.

`verify` applies the same textual soundness screen as the Lean backends before it retraces a
proof, so a replayed "proof" that writes `sorry` (or anything else the screen bans) is refused
with the same reason everywhere.

The recording is a graph per theorem (state -> tactic -> state), not a list: LeanDojo traces
nested tactic blocks as separate steps, so a theorem's steps need not form one chain.
"""

from __future__ import annotations

import re
from collections import defaultdict

from leanstar.data.leandojo import LeanDojoTheorem, load_leandojo
from leanstar.lean.env import (
    ProofFinished,
    ProofState,
    StartResult,
    TacticResult,
    UnknownToReplay,
    assemble_proof,
)
from leanstar.lean.screen import screen_proof
from leanstar.records import REPLAY_LABEL, Theorem, Verdict

NO_GOALS = "no goals"
_SPACE = re.compile(r"\s+")


def normalize_tactic(tactic: str) -> str:
    return _SPACE.sub(" ", tactic).strip()


class ReplayEnv:
    label = REPLAY_LABEL

    def __init__(self, theorems: list[LeanDojoTheorem], allow_native_decide: bool = False) -> None:
        self.allow_native_decide = allow_native_decide
        self._initial: dict[str, str] = {}
        self._edges: dict[str, dict[tuple[str, str], str]] = defaultdict(dict)
        for thm in theorems:
            if not thm.steps:
                continue
            self._initial[thm.full_name] = thm.steps[0].state_before
            for step in thm.steps:
                key = (step.state_before, normalize_tactic(step.tactic))
                self._edges[thm.full_name][key] = step.state_after

    @classmethod
    def from_file(cls, path: str, allow_native_decide: bool = False) -> ReplayEnv:
        return cls(load_leandojo(path), allow_native_decide)

    def knows(self, theorem_name: str) -> bool:
        return theorem_name in self._initial

    async def start(self, theorem: Theorem) -> StartResult:
        if theorem.name not in self._initial:
            return UnknownToReplay(f"theorem {theorem.name!r}")
        return ProofState(theorem.name, self._initial[theorem.name])

    async def run_tactic(self, state: ProofState, tactic: str) -> TacticResult:
        return self._step(state.theorem, state.goals, state.tactics, tactic)

    def _step(self, theorem: str, goals: str, path: tuple[str, ...], tactic: str) -> TacticResult:
        after = self._edges.get(theorem, {}).get((goals, normalize_tactic(tactic)))
        if after is None:
            return UnknownToReplay(f"tactic {normalize_tactic(tactic)!r} from this state")
        tactics = (*path, tactic)
        if after == NO_GOALS:
            return ProofFinished(theorem, tactics)
        return ProofState(theorem, after, tactics)

    async def verify(self, theorem: Theorem, tactics: tuple[str, ...]) -> Verdict:
        """Screen the proof text, then retrace `tactics` through the recording. Lean checks
        nothing here, and the verdict says so."""
        finding = screen_proof(
            assemble_proof(tactics), allow_native_decide=self.allow_native_decide
        )
        if finding is not None:
            return Verdict(False, finding.reason, REPLAY_LABEL)
        if theorem.name not in self._initial:
            return Verdict(
                False, f"theorem {theorem.name!r} is not in the replay recording", REPLAY_LABEL
            )
        goals, path = self._initial[theorem.name], ()
        for i, tactic in enumerate(tactics):
            result = self._step(theorem.name, goals, path, tactic)
            if isinstance(result, ProofFinished):
                if i != len(tactics) - 1:
                    return Verdict(
                        False, f"goals closed at tactic {i + 1} of {len(tactics)}", REPLAY_LABEL
                    )
                return Verdict(
                    True,
                    "retraced recorded states to 'no goals' (not checked by Lean)",
                    REPLAY_LABEL,
                )
            if not isinstance(result, ProofState):
                return Verdict(False, f"tactic {i + 1} is not in the recording", REPLAY_LABEL)
            goals, path = result.goals, result.tactics
        return Verdict(False, "goals remain after the last tactic", REPLAY_LABEL)

    async def close(self) -> None:
        return None
