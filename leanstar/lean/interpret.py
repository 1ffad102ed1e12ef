"""What a REPL answer means for a search: pure functions from protocol answers to outcomes.

Kept apart from the pool so every recorded answer can be run through them in tests. The rules,
with the transcripts that show why:

- a tactic answer with goals is a new proof state (several goals are joined by a blank line, as
  LeanDojo prints them);
- no goals is a finished proof only if nothing says otherwise: an error message, a `sorry`
  left behind (a `sorries` entry, or `proofStatus` "Incomplete: contains sorry"; Lean v4.15
  has no proofStatus and reports `sorry` only through `sorries`), a kernel failure
  (`proofStatus` "Error: kernel type check failed: ..." comes with `goals: []`), or
  metavariables;
- `{"message": "Lean error:\\n..."}` is Lean rejecting the tactic; "Unknown proof state." means
  the process lost the state (our bookkeeping is off, or it restarted): the pool rebuilds it;
  any other message is an environment failure, not the tactic's fault.
"""

from __future__ import annotations

from dataclasses import dataclass

from leanstar.lean.protocol import (
    CommandResponse,
    ErrorResponse,
    Message,
    Response,
    TacticResponse,
)

GOAL_SEPARATOR = "\n\n"
COMPLETED = "Completed"


@dataclass(frozen=True)
class Opened:
    """The tactic ran; these goals remain, in REPL proof state `proof_state`."""

    goals: str
    proof_state: int


@dataclass(frozen=True)
class Finished:
    """No goals remain and nothing is wrong. `messages`: Lean's warnings and infos, if any."""

    messages: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rejected:
    """Lean rejected the tactic or the statement (shown to the model as a Lean error)."""

    message: str


@dataclass(frozen=True)
class Broken:
    """The environment failed; the tactic is not to blame."""

    message: str


@dataclass(frozen=True)
class Lost:
    """The process no longer knows the proof state or environment that was named."""

    message: str


Outcome = Opened | Finished | Rejected | Broken | Lost

_LOST = ("Unknown proof state.", "Unknown environment.")


def _error_outcome(resp: ErrorResponse) -> Outcome:
    if resp.message in _LOST:
        return Lost(resp.message)
    lean = resp.lean_error
    if lean is not None:
        return Rejected(lean)
    return Broken(f"REPL: {resp.message}")


def _joined_errors(errors: tuple[Message, ...]) -> str:
    return "\n".join(m.data for m in errors)


def _notes(messages: tuple[Message, ...]) -> tuple[str, ...]:
    return tuple(m.data for m in messages if not m.is_error)


def tactic_outcome(resp: Response) -> Outcome:
    """The meaning of the answer to `{"tactic": ..., "proofState": n}`."""
    if isinstance(resp, ErrorResponse):
        return _error_outcome(resp)
    if not isinstance(resp, TacticResponse):
        return Broken(f"REPL answered a tactic with a command's answer (env {resp.env})")
    if resp.errors:
        return Rejected(_joined_errors(resp.errors))
    status = resp.proof_status
    if resp.sorries or (status or "").startswith("Incomplete: contains sorry"):
        return Rejected("the tactic left a `sorry` behind")
    if status is not None and status.startswith("Error"):
        return Rejected(status)
    if resp.goals:
        return Opened(GOAL_SEPARATOR.join(resp.goals), resp.proof_state)
    if status is None or status == COMPLETED:
        return Finished(_notes(resp.messages))
    return Rejected(f"no goals remain, but the REPL says: {status}")


def start_outcome(resp: Response) -> Outcome:
    """The meaning of the answer to `{"cmd": "<statement> := by sorry", ...}`: the one sorry
    is the theorem's initial proof state."""
    if isinstance(resp, ErrorResponse):
        return _error_outcome(resp)
    if not isinstance(resp, CommandResponse):
        return Broken("REPL answered a command with a tactic's answer")
    if resp.errors:
        return Rejected(f"the statement does not elaborate: {_joined_errors(resp.errors)}")
    if len(resp.sorries) != 1 or resp.sorries[0].proof_state is None:
        return Rejected(
            f"expected exactly one `sorry` (the proof placeholder), Lean reported "
            f"{len(resp.sorries)}: does the statement itself contain `sorry`?"
        )
    return Opened(resp.sorries[0].goal, resp.sorries[0].proof_state)


def command_env(resp: Response) -> tuple[int | None, str | None]:
    """(env, problem) for a header or helper command: the new environment, or why it failed."""
    if isinstance(resp, ErrorResponse):
        return None, f"REPL: {resp.message}"
    if not isinstance(resp, CommandResponse):
        return None, "REPL answered a command with a tactic's answer"
    if resp.errors:
        return None, _joined_errors(resp.errors)
    return resp.env, None
