"""The `ProofEnv` interface: start a theorem, run tactics on immutable states, verify a proof.

Every backend (Lean REPL, LeanDojo, replay of recorded states) answers with the same small set
of frozen result types, so a search never needs to know which one it talks to:

    start(theorem)            -> ProofState | LeanError | Timeout | EnvFailure | UnknownToReplay
    run_tactic(state, tactic) -> ProofState | ProofFinished | LeanError | Timeout | EnvFailure
                                 | UnknownToReplay
    verify(theorem, tactics)  -> Verdict (the whole-proof check; `ok` only if it passed)

A `ProofState` carries the tactic path that led to it from the theorem's start, so a backend
that loses a process can rebuild the state elsewhere by replaying the path, and a search can
branch and backtrack freely: states are never mutated.

The methods are coroutines: a search awaits Lean while other searches sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from leanstar.records import StepOutcome, Theorem, Verdict


@dataclass(frozen=True)
class ProofState:
    """Open goals as Lean prints them. `handle` is the backend's private reference (e.g. a REPL
    proofState id on one worker) and takes no part in equality: two states with the same goals
    reached by the same tactics are the same state."""

    theorem: str
    goals: str
    tactics: tuple[str, ...] = ()
    handle: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class ProofFinished:
    """No goals remain. `messages` holds Lean's warnings/infos, if any (a `sorry` warning here
    must make the whole-proof check fail)."""

    theorem: str
    tactics: tuple[str, ...]
    messages: tuple[str, ...] = ()


@dataclass(frozen=True)
class LeanError:
    """Lean rejected the tactic (or the statement)."""

    message: str


@dataclass(frozen=True)
class Timeout:
    """The command ran past its wall-clock limit and its process was killed."""

    seconds: float


@dataclass(frozen=True)
class EnvFailure:
    """The environment broke (crash, protocol error, out of memory): not the tactic's fault."""

    message: str


@dataclass(frozen=True)
class UnknownToReplay:
    """The replay environment holds no recording of this tactic (or theorem) here. Never read
    as success or as a Lean error: Lean was not asked."""

    what: str


TacticResult = ProofState | ProofFinished | LeanError | Timeout | EnvFailure | UnknownToReplay
StartResult = ProofState | LeanError | Timeout | EnvFailure | UnknownToReplay

_OUTCOMES: dict[type, StepOutcome] = {
    ProofState: StepOutcome.PROOF_STATE,
    ProofFinished: StepOutcome.PROOF_FINISHED,
    LeanError: StepOutcome.LEAN_ERROR,
    Timeout: StepOutcome.TIMEOUT,
    EnvFailure: StepOutcome.ENV_FAILURE,
    UnknownToReplay: StepOutcome.UNKNOWN_TO_REPLAY,
}


def outcome_of(result: TacticResult) -> StepOutcome:
    return _OUTCOMES[type(result)]


def message_of(result: TacticResult) -> str | None:
    """The human-readable part of a result, for a trajectory step."""
    if isinstance(result, (LeanError, EnvFailure)):
        return result.message
    if isinstance(result, Timeout):
        return f"timed out after {result.seconds:g} s"
    if isinstance(result, UnknownToReplay):
        return f"not in the replay recording: {result.what}"
    if isinstance(result, ProofFinished) and result.messages:
        return "\n".join(result.messages)
    return None


class ProofEnv(Protocol):
    """A proof-checking environment. `label` names what checks the proofs, as shown to users
    (e.g. "Lean REPL v4.24.0" or `REPLAY_LABEL`)."""

    label: str

    async def start(self, theorem: Theorem) -> StartResult: ...

    async def run_tactic(self, state: ProofState, tactic: str) -> TacticResult: ...

    async def verify(self, theorem: Theorem, tactics: tuple[str, ...]) -> Verdict: ...

    async def close(self) -> None: ...


def assemble_proof(tactics: tuple[str, ...] | list[str], indent: str = "  ") -> str:
    """The tactic block of a proof, each tactic's lines indented under `by`:
    `statement := by\\n` + assemble_proof(tactics)."""
    lines = []
    for tactic in tactics:
        lines.extend(indent + line if line.strip() else line for line in tactic.split("\n"))
    return "\n".join(lines)
