"""From a round's trajectories to new training triples (expert iteration's "keep what Lean accepts").

Only trajectories whose whole proof passed the verifier (`Trajectory.proved`) contribute. Per
theorem at most `max_proofs` distinct proofs are kept (distinct = different tactic sequence,
whitespace aside), taken in attempt order so the choice is deterministic. Each kept proof
yields one (state, thought, tactic) triple per step on the proof's path; failed tactics that
were resampled, and best-first steps on branches off the proof, are not training data. Triples already kept (same state, thought and tactic) are not
repeated.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from leanstar.lean.replay import normalize_tactic
from leanstar.records import ThoughtStep, Trajectory
from leanstar.search.context import proof_path


@dataclass(frozen=True)
class Collected:
    steps: list[ThoughtStep]
    proofs_kept: int
    theorems_proved: frozenset[str]
    multiline_dropped: int


def collect(
    trajectories: Iterable[Trajectory],
    *,
    round: int,
    max_proofs: int = 1,
    drop_multiline: bool = False,
) -> Collected:
    kept: dict[str, list[tuple[str, ...]]] = defaultdict(list)
    out: list[ThoughtStep] = []
    seen: set[tuple[str, str, str]] = set()
    dropped = 0
    for traj in sorted((t for t in trajectories if t.proved), key=lambda t: (t.theorem, t.attempt)):
        steps = proof_path(traj)  # best-first branches off the proof are not training data
        signature = tuple(normalize_tactic(s.tactic or "") for s in steps)
        if signature in kept[traj.theorem] or len(kept[traj.theorem]) >= max_proofs:
            continue
        kept[traj.theorem].append(signature)
        for step in steps:
            if drop_multiline and "\n" in (step.tactic or "").strip():
                dropped += 1
                continue
            key = (step.state, step.thought or "", step.tactic or "")
            if key in seen:
                continue
            seen.add(key)
            out.append(
                ThoughtStep(
                    state=step.state,
                    thought=step.thought or "",
                    tactic=step.tactic or "",
                    theorem=traj.theorem,
                    source="expert_iteration",
                    teacher=traj.model,
                    round=round,
                )
            )
    return Collected(
        steps=out,
        proofs_kept=sum(len(v) for v in kept.values()),
        theorems_proved=frozenset(kept),
        multiline_dropped=dropped,
    )
