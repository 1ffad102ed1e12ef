"""What the trace views need from one trajectory record, read fast and checked.

`leanstar.records.from_json` rebuilds a full `Trajectory` (about 0.5 ms each); an index over
640,000 trajectories cannot afford that, so `digest` reads the raw JSON object once, checks the
fields it uses (a bad one is a `JsonlError` naming file, line and field) and keeps only the
facts the tables, filters, plots and comparisons are built from. The trajectory view itself
reads the full record again from its byte offset.

Also here, because every view must agree on them: how a tactic is named in statistics
(`tactic_head`), how Lean's errors are grouped (`error_kind`) and how text is cut into search
tokens (`tokenize`, mirrored by `tokenize` in viewer.js).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from leanstar.jsonl import JsonlError
from leanstar.records import REPLAY_LABEL, StepOutcome, Trajectory, TrajectoryOutcome

TRAJECTORY_KIND, _, TRAJECTORY_VERSION = Trajectory.SCHEMA.partition("/")
ADVANCING = frozenset({StepOutcome.PROOF_STATE.value, StepOutcome.PROOF_FINISHED.value})
STEP_OUTCOMES = frozenset(o.value for o in StepOutcome)
OUTCOMES = tuple(o.value for o in TrajectoryOutcome)  # proved, failed, rejected, error

_TOKEN = re.compile(r"[^\W_]+")  # letters and digits: JS /[\p{L}\p{N}]+/gu
_HEAD = re.compile(r"^[\s·.(]*([A-Za-z_][A-Za-z0-9_'?!]*)")
_QUOTED = re.compile(r"`[^`]*`|'[^'\s]*'|«[^»]*»")
_NUMBER = re.compile(r"\d+")

# Lean's error messages grouped by their first line (most specific first).
_ERROR_KINDS = (
    ("unsolved goals", "unsolved goals"),
    ("unknown identifier", "unknown identifier"),
    ("unknown constant", "unknown constant"),
    ("unknown tactic", "unknown tactic"),
    ("application type mismatch", "application type mismatch"),
    ("type mismatch", "type mismatch"),
    ("linarith failed", "linarith failed"),
    ("nlinarith failed", "linarith failed"),
    ("failed to synthesize", "failed to synthesize instance"),
    ("simp made no progress", "simp made no progress"),
    ("did not find instance of the pattern", "rewrite: pattern not found"),
    ("motive is not type correct", "rewrite: motive is not type correct"),
    ("no goals", "no goals to be solved"),
    ("deterministic) timeout", "heartbeat timeout"),
    ("maximum recursion depth", "maximum recursion depth"),
    ("unexpected token", "parse error"),
    ("omega could not prove", "omega failed"),
    ("the rfl tactic failed", "rfl failed"),
    ("ring failed", "ring failed"),
    ("norm_num failed", "norm_num failed"),
    ("function expected", "function expected"),
    ("don't know how to synthesize placeholder", "cannot synthesize placeholder"),
)
_OUTCOME_KINDS = {
    StepOutcome.TIMEOUT.value: "timeout",
    StepOutcome.ENV_FAILURE.value: "environment failure",
    StepOutcome.UNKNOWN_TO_REPLAY.value: "unknown to replay",
    StepOutcome.UNPARSABLE.value: "unparsable completion",
}


def tokenize(text: str | None) -> set[str]:
    """Search tokens: maximal runs of letters and digits, lower-cased (`_`, `.`, symbols split)."""
    return set(_TOKEN.findall(text.lower())) if text else set()


def tactic_head(tactic: str | None) -> str:
    """The tactic's name for statistics: `nth_rw 1 [h]` -> `nth_rw`, `· simp` -> `simp`."""
    if not tactic or not tactic.strip():
        return "(none)"
    m = _HEAD.match(tactic)
    return m.group(1) if m else "(other)"


def error_kind(outcome: str, message: str | None) -> str:
    """A short, countable name for why a step did not advance the proof."""
    if outcome in _OUTCOME_KINDS:
        return _OUTCOME_KINDS[outcome]
    first = (message or "").strip().split("\n", 1)[0].strip()
    if not first:
        return "error (no message)"
    low = first.lower()
    for needle, kind in _ERROR_KINDS:
        if needle in low:
            return kind
    general = _NUMBER.sub("N", _QUOTED.sub("…", first))
    return general if len(general) <= 60 else general[:59] + "…"


@dataclass(frozen=True)
class StepFact:
    """One sampled step, as statistics see it."""

    head: str
    advancing: bool
    thought_chars: int | None  # None: the step has no thought
    error: str | None  # error_kind when the step did not advance


@dataclass
class Digest:
    """The facts of one trajectory that the index stores and the statistics fold."""

    theorem: str
    round: int
    attempt: int
    outcome: str
    split: str
    checked_by: str
    strategy: str
    model: str
    verdict_ok: bool | None
    elapsed_s: float
    goal: str  # the first step's state: the initial goal
    steps: list[StepFact] = field(default_factory=list)
    tokens: set[str] = field(default_factory=set)  # of thoughts and tactics

    @property
    def replay(self) -> bool:
        return self.checked_by == REPLAY_LABEL

    @property
    def proved(self) -> bool:
        return self.outcome == "proved"

    @property
    def proof_len(self) -> int:
        return sum(s.advancing for s in self.steps)

    @property
    def n_failed(self) -> int:
        return sum(not s.advancing for s in self.steps)

    @property
    def thought_chars(self) -> int:
        return sum(s.thought_chars or 0 for s in self.steps)


def digest(obj: dict[str, Any], where: str) -> Digest:
    """Check a trajectory JSON object and keep what the views need; `where` is `file:line`."""
    _check_schema(obj, where)
    theorem = _field(obj, "theorem", str, where)
    outcome = _field(obj, "outcome", str, where)
    if outcome not in OUTCOMES:
        raise JsonlError(f"{where}: trajectory.outcome: {outcome!r} is not one of {list(OUTCOMES)}")
    raw_steps = _field(obj, "steps", list, where)
    verdict = obj.get("verdict")
    if verdict is not None and not (isinstance(verdict, dict) and "ok" in verdict):
        raise JsonlError(f"{where}: trajectory.verdict: expected an object with 'ok'")
    d = Digest(
        theorem=theorem,
        round=_field(obj, "round", int, where, 0),
        attempt=_field(obj, "attempt", int, where),
        outcome=outcome,
        split=_field(obj, "split", str, where, ""),
        checked_by=_field(obj, "checked_by", str, where),
        strategy=_field(obj, "strategy", str, where, ""),
        model=_field(obj, "model", str, where, ""),
        verdict_ok=bool(verdict["ok"]) if verdict else None,
        elapsed_s=float(_field(obj, "elapsed_s", (int, float), where, 0.0)),
        goal="",
    )
    texts: list[str] = []
    for i, step in enumerate(raw_steps):
        d.steps.append(_step(step, f"{where}: trajectory.steps[{i}]", texts))
    d.tokens = tokenize("\n".join(texts))
    if raw_steps:
        d.goal = raw_steps[0].get("state") or ""
    return d


def _step(step: Any, where: str, texts: list[str]) -> StepFact:
    if not isinstance(step, dict):
        raise JsonlError(f"{where}: expected an object")
    outcome = step.get("outcome")
    if outcome not in STEP_OUTCOMES:
        raise JsonlError(f"{where}.outcome: {outcome!r} is not one of {sorted(STEP_OUTCOMES)}")
    thought, tactic = step.get("thought"), step.get("tactic")
    for name, value in (("thought", thought), ("tactic", tactic), ("state", step.get("state"))):
        if value is not None and not isinstance(value, str):
            raise JsonlError(f"{where}.{name}: expected a string, got {value!r}")
    texts.append(thought or "")
    texts.append(tactic or "")
    advancing = outcome in ADVANCING
    return StepFact(
        head=tactic_head(tactic),
        advancing=advancing,
        thought_chars=len(thought) if thought else None,
        error=None if advancing else error_kind(outcome, step.get("message")),
    )


def _check_schema(obj: dict[str, Any], where: str) -> None:
    tag = obj.get("schema")
    if not isinstance(tag, str) or "/" not in tag:
        raise JsonlError(f"{where}: missing or malformed 'schema' (expected {Trajectory.SCHEMA!r})")
    kind, _, version = tag.partition("/")
    if kind != TRAJECTORY_KIND:
        raise JsonlError(f"{where}: record is a {kind!r}, expected a {TRAJECTORY_KIND!r}")
    if not version.isdigit() or int(version) > int(TRAJECTORY_VERSION):
        raise JsonlError(f"{where}: schema {tag!r} is newer than this leanstar reads")


_MISSING = object()


def _field(obj: dict[str, Any], name: str, tp: Any, where: str, default: Any = _MISSING) -> Any:
    value = obj.get(name, _MISSING)
    if value is _MISSING:
        if default is _MISSING:
            raise JsonlError(f"{where}: trajectory.{name}: missing")
        return default
    if not isinstance(value, tp) or isinstance(value, bool):
        raise JsonlError(f"{where}: trajectory.{name}: expected {_tp_name(tp)}, got {value!r}")
    return value


def _tp_name(tp: Any) -> str:
    return "a number" if isinstance(tp, tuple) else tp.__name__
