"""Fixture runs for the trace viewer's tests and benchmark: synthetic attempts over real states.

Every proof state, tactic that advances a proof and resulting state comes from the bundled
LeanDojo Benchmark 4 sample (real Mathlib states, real Unicode). Everything else is made up
here and labelled so: the thoughts (templates), which attempts fail and how (wrong tactics
borrowed from other theorems, with error messages shaped like Lean's), timings, log-probs, and
the theorem copies past the 17 real ones (`NAME.fx123`). `model` says "fixture" on every
record, and `checked_by` is either the replay label or a label that says nothing was checked.
Never use a fixture run for a number about a prover.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from leanstar.data.leandojo import LeanDojoTheorem, load_leandojo
from leanstar.records import REPLAY_LABEL

FIXTURE_MODEL = "fixture: synthetic attempts over real LeanDojo states (no model)"
FIXTURE_LEAN_LABEL = "fixture: marked as checked by Lean for tests (nothing was checked)"

_OPEN = (
    "The goal is {concl}.",
    "We need to show {concl}.",
    "Here the target reads {concl}.",
    "What remains is {concl}.",
    "Looking at the goal {concl}, the shape suggests a standard move.",
)
_MIDDLE = (
    "The hypotheses already carry most of the information.",
    "Both sides involve the same terms, so it is a matter of rearranging them.",
    "A lemma from Mathlib should match this pattern directly.",
    "Unfolding the definition should expose the structure.",
    "The context gives what we need once it is put in the right form.",
    "It helps to first normalise the expression.",
)
_CLOSE = {
    "rw": "Rewriting with the right equations should turn one side into the other.",
    "nth_rw": "Only one occurrence should change, so a targeted rewrite fits.",
    "simp": "The simplifier with the relevant lemmas should close or reduce it.",
    "exact": "A term of exactly this type is available, so we can give it directly.",
    "apply": "Applying the lemma reduces the goal to its hypotheses.",
    "rcases": "Destructuring the hypothesis gives names to its parts.",
    "intro": "Introducing the hypothesis lets us work under it.",
    "convert": "The goal is close to a known fact; convert leaves only the differences.",
    "refine": "We can build the term with holes for the remaining obligations.",
}
_CLOSE_DEFAULT = "So the next step is `{head}`."
_EXTRA = (
    "Nothing about the side conditions looks hard, they should follow from the hypotheses.",
    "If this fails, the fallback is to split the goal into cases first.",
    "The numeric bounds are not needed here, only the algebraic shape.",
)
_ERRORS = (  # (outcome, message template) shaped like Lean's messages, not recorded from Lean
    ("lean_error", "unknown identifier '{ident}'"),
    ("lean_error", "linarith failed to find a contradiction\n{state}"),
    ("lean_error", "simp made no progress"),
    ("lean_error", "unsolved goals\n{state}"),
    ("lean_error", "type mismatch\n  this\nhas type\n  {ident} : Prop\nbut is expected ..."),
    ("timeout", "the tactic ran past the 60 s limit"),
    ("unknown_to_replay", "the replay environment has no record of this tactic"),
)


@dataclass
class FixtureSpec:
    theorems: int = 17  # the first 17 are the real bundled theorems, the rest numbered copies
    attempts: int = 4  # per theorem and round
    rounds: int = 1
    layout: str = "flat"  # flat: RUN/trajectories.jsonl; rounds: RUN/round-K/trajectories.jsonl
    seed: int = 0
    checked_by: str = REPLAY_LABEL
    thoughts: bool = True
    write_theorems: bool = True
    partial_tail: bool = False  # end the last file with half a line, as a killed writer would


@dataclass
class FixtureStats:
    trajectories: int = 0
    proved: dict[int, set[str]] = field(default_factory=dict)  # round -> theorems proved
    attempted: dict[int, set[str]] = field(default_factory=dict)
    bytes: int = 0
    files: list[Path] = field(default_factory=list)


def bases() -> list[LeanDojoTheorem]:
    """The bundled LeanDojo theorems that have traced tactics (17)."""
    return [t for t in load_leandojo("bundled:leandojo-benchmark4-sample.json") if t.steps]


def theorem_name(i: int, base: list[LeanDojoTheorem]) -> str:
    b = base[i % len(base)]
    return b.full_name if i < len(base) else f"{b.full_name}.fx{i}"


def write_fixture_run(
    run_dir: str | Path, spec: FixtureSpec, progress: Callable[[int], None] | None = None
) -> FixtureStats:
    """Write a fixture run; `progress(theorems_done)` is called once per theorem and round."""
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    base = bases()
    stats = FixtureStats()
    if spec.write_theorems:
        _write_theorems(run / "theorems.jsonl", spec, base)
    for rnd in range(spec.rounds):
        folder = run if spec.layout == "flat" else run / f"round-{rnd}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "trajectories.jsonl"
        proofs = []
        with path.open("w", encoding="utf-8") as out:
            for i in range(spec.theorems):
                if rnd > 0 and i % 7 == 3:
                    continue  # not attempted in later rounds
                lines, proof = _theorem_round(i, rnd, spec, base, stats)
                out.write(lines)
                if proof:
                    proofs.append(proof)
                if progress:
                    progress(i + 1)
            if spec.partial_tail and rnd == spec.rounds - 1:
                out.write('{"schema":"trajectory/1","theorem":"half a li')
        if spec.layout == "rounds":
            with (folder / "proofs.jsonl").open("w", encoding="utf-8") as out:
                out.writelines(proofs)
        stats.files.append(path)
        stats.bytes += path.stat().st_size
    return stats


def _write_theorems(path: Path, spec: FixtureSpec, base: list[LeanDojoTheorem]) -> None:
    with path.open("w", encoding="utf-8") as out:
        for i in range(spec.theorems):
            b = base[i % len(base)]
            rec = {
                "schema": "theorem/1",
                "name": theorem_name(i, base),
                "statement": "",
                "split": _split(i),
                "source": f"fixture over leandojo:{b.url}@{b.commit[:8]}",
                "goal": b.steps[0].state_before,
                "file_path": b.file_path,
            }
            out.write(json.dumps(rec, ensure_ascii=False) + "\n")


def _split(i: int) -> str:
    return "test" if i % 5 == 4 else "train"


def _theorem_round(i, rnd, spec, base, stats) -> tuple[str, str | None]:
    b = base[i % len(base)]
    name = theorem_name(i, base)
    rng = random.Random(spec.seed * 1_000_003 + i * 101 + rnd)
    difficulty = 0.2 + 0.78 * ((i * 2654435761) % 1000) / 1000  # per theorem, fixed
    p_fail = max(0.05, difficulty - 0.08 * rnd)
    lines, proof = [], None
    stats.attempted.setdefault(rnd, set()).add(name)
    for attempt in range(spec.attempts):
        traj = _attempt(name, b, attempt, rnd, p_fail, rng, spec, base)
        traj["split"] = _split(i)
        stats.trajectories += 1
        if traj["outcome"] == "proved":
            stats.proved.setdefault(rnd, set()).add(name)
            if proof is None:
                proof = _proof_steps(traj, rnd)
        lines.append(json.dumps(traj, ensure_ascii=False, separators=(",", ":")))
    return "\n".join(lines) + "\n", proof


def _attempt(name, b, attempt, rnd, p_fail, rng, spec, base) -> dict:
    steps, depth, outcome, stop = [], 0, "proved", "no goals"
    for depth, ts in enumerate(b.steps):
        tries = 0
        while rng.random() < p_fail:
            tries += 1
            steps.append(_failed_step(depth, ts.state_before, rng, spec, base, rnd))
            if tries >= 3 or steps[-1]["outcome"] == "env_failure":
                outcome, stop = "failed", "resamples exhausted"
                break
        if outcome != "proved":
            break
        last = depth == len(b.steps) - 1
        steps.append(
            _step(depth, ts.state_before, ts.tactic, "proof_finished" if last else "proof_state",
                  None if last else ts.state_after, None, rng, spec, rnd)
        )  # fmt: skip
    if outcome == "proved" and rng.random() < 0.03:
        outcome, stop = "rejected", "whole-proof check refused"
    elif outcome == "failed" and rng.random() < 0.1:
        steps.append(_step(depth, b.steps[depth].state_before, "omega", "env_failure", None,
                           "the Lean process died (fixture)", rng, spec, rnd))  # fmt: skip
        outcome, stop = "error", "environment failure"
    proof = "\n".join(
        s["tactic"] for s in steps if s["outcome"] in ("proof_state", "proof_finished")
    )
    verdict = None
    if outcome in ("proved", "rejected"):
        verdict = {
            "ok": outcome == "proved",
            "reason": "fixture verdict (synthetic)"
            if outcome == "proved"
            else "fixture: statement changed (synthetic refusal)",
            "checked_by": spec.checked_by,
            "axioms": [],
            "uses_native_decide": False,
        }
    return {
        "schema": "trajectory/1",
        "theorem": name,
        "attempt": attempt,
        "outcome": outcome,
        "steps": steps,
        "checked_by": spec.checked_by,
        "strategy": "sampling",
        "stop_reason": stop,
        "proof": proof if outcome in ("proved", "rejected") else None,
        "verdict": verdict,
        "round": rnd,
        "model": FIXTURE_MODEL,
        "split": "",
        "seed": spec.seed,
        "elapsed_s": round(sum(s["sample_s"] + s["lean_s"] for s in steps), 3),
    }


def _failed_step(depth, state, rng, spec, base, rnd) -> dict:
    other = rng.choice(base)
    tactic = rng.choice(other.steps).tactic
    outcome, template = rng.choice(_ERRORS)
    ident = rng.choice(("foo_le", "Nat.succ_le_iff'", "mul_pos_iff", "h₂", "hx"))
    message = template.format(state=state, ident=ident)
    return _step(depth, state, tactic, outcome, None, message, rng, spec, rnd)


def _step(depth, state, tactic, outcome, after, message, rng, spec, rnd) -> dict:
    return {
        "depth": depth,
        "state": state,
        "thought": _thought(state, tactic, rng, rnd) if spec.thoughts else None,
        "tactic": tactic,
        "outcome": outcome,
        "state_after": after,
        "message": message,
        "logprob": round(-rng.uniform(0.3, 14.0), 3),
        "sample_s": round(rng.uniform(0.04, 0.9), 3),
        "lean_s": round(rng.uniform(0.01, 2.5), 3) if outcome != "timeout" else 60.0,
    }


def _thought(state: str, tactic: str, rng: random.Random, rnd: int) -> str:
    concl = state.rsplit("⊢", 1)[-1].strip().replace("\n", " ")
    concl = f"`{concl[:70]}{'…' if len(concl) > 70 else ''}`"
    head = tactic.split()[0] if tactic.split() else tactic
    parts = [rng.choice(_OPEN).format(concl=concl), rng.choice(_MIDDLE)]
    if rng.random() < 0.25 + 0.2 * rnd:
        parts.append(rng.choice(_EXTRA))
    parts.append(_CLOSE.get(head, _CLOSE_DEFAULT).format(head=head))
    return " ".join(parts)


def _proof_steps(traj: dict, rnd: int) -> str:
    out = []
    for s in traj["steps"]:
        if s["outcome"] in ("proof_state", "proof_finished"):
            rec = {
                "schema": "thought_step/1",
                "state": s["state"],
                "thought": s["thought"] or "",
                "tactic": s["tactic"],
                "theorem": traj["theorem"],
                "source": "expert_iteration",
                "teacher": FIXTURE_MODEL,
                "round": rnd,
            }
            out.append(json.dumps(rec, ensure_ascii=False) + "\n")
    return "".join(out)
