"""TEST FIXTURES for the SFT tests: thought records built from the bundled LeanDojo steps.

No real thought records are bundled yet, so these pair each real (state, tactic) of the
bundled LeanDojo Benchmark 4 sample with a short hand-written thought chosen by the tactic's
first word. They are test fixtures, not teacher output, and say so in their `teacher` field.
"""

from __future__ import annotations

from pathlib import Path

from leanstar.data import load_leandojo, traced_steps
from leanstar.jsonl import JsonlWriter
from leanstar.records import ThoughtStep, TracedStep

LEANDOJO_SAMPLE = "bundled:leandojo-benchmark4-sample.json"
FIXTURE_TEACHER = "hand-written test fixture"

_THOUGHTS = {
    "simp": "Both sides should agree after unfolding the definitions, so simplification fits.",
    "dsimp": "The goal is stated through a definition that unfolds definitionally.",
    "rw": "An equation in context turns the goal into a form that is easier to close.",
    "intro": "The goal is an implication or a universal statement, so introduce the hypothesis.",
    "exact": "A term of exactly the goal's type is already available.",
    "apply": "A lemma's conclusion matches the goal, leaving its premises to prove.",
    "refine": "The goal has the shape of a constructor whose fields can be given one by one.",
    "constructor": "The goal is a conjunction or structure, so split it into its parts.",
    "obtain": "A hypothesis packs several facts that are easier to use once taken apart.",
    "have": "An intermediate fact would make the remaining goal follow directly.",
    "cases": "Splitting on the cases of a hypothesis handles each situation separately.",
}
_DEFAULT = "Look at the shape of the goal and take the most direct step towards it."


def thought_for(tactic: str) -> str:
    word = tactic.split(maxsplit=1)[0].rstrip("!?") if tactic.strip() else ""
    return _THOUGHTS.get(word, _DEFAULT)


def bundled_steps() -> list[TracedStep]:
    return traced_steps(load_leandojo(LEANDOJO_SAMPLE))


def thought_records(limit: int | None = None) -> list[ThoughtStep]:
    steps = bundled_steps()[:limit]
    return [
        ThoughtStep(
            state=s.state_before,
            thought=thought_for(s.tactic),
            tactic=s.tactic,
            theorem=s.theorem,
            source="teacher",
            teacher=FIXTURE_TEACHER,
        )
        for s in steps
    ]


def write_thought_records(path: Path, limit: int | None = None) -> Path:
    with JsonlWriter(path) as writer:
        writer.write_all(thought_records(limit))
    return path
