"""The records that flow between stages, as frozen dataclasses, and their JSON form.

    Theorem ──► search ──► Trajectory (steps: state, thought, tactic, Lean's answer)
    TracedStep (LeanDojo) ──► thought synthesis ──► ThoughtStep ──► SFT

Each record serialises to one JSON object carrying `"schema": "<kind>/<version>"`, so a file
says what it holds and a reader refuses records from a newer schema instead of misreading them.
Storage (append-only JSONL) lives in `leanstar.jsonl`.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

R = TypeVar("R")

REPLAY_LABEL = "replay (not checked by Lean)"


class SchemaError(ValueError):
    """A JSON object that is not a valid record of the expected kind."""


@dataclass(frozen=True)
class Theorem:
    """A theorem to prove. `statement` is the declaration up to (not including) `:=`."""

    name: str
    statement: str
    header: str = ""
    split: str = ""
    source: str = ""
    informal: str = ""
    goal: str | None = None
    file_path: str | None = None

    SCHEMA = "theorem/1"


@dataclass(frozen=True)
class TracedStep:
    """One ground-truth tactic of a traced proof (LeanDojo Benchmark format)."""

    theorem: str
    file_path: str
    index: int
    state_before: str
    tactic: str
    state_after: str
    url: str = ""
    commit: str = ""

    SCHEMA = "traced_step/1"


@dataclass(frozen=True)
class ThoughtStep:
    """A (state, thought, tactic) triple for training, with where the thought came from.

    `source` is "teacher" for synthesized thoughts and "expert_iteration" for steps of proofs
    the prover found itself in round `round`; `teacher` names the model that wrote the thought.
    """

    state: str
    thought: str
    tactic: str
    theorem: str = ""
    source: str = "teacher"
    teacher: str = ""
    round: int = 0
    prompt_version: str = ""
    key: str = ""
    usage: dict[str, int] = field(default_factory=dict)

    SCHEMA = "thought_step/1"


class StepOutcome(str, enum.Enum):
    """What happened to one sampled step. Only PROOF_STATE and PROOF_FINISHED advance a proof."""

    PROOF_STATE = "proof_state"  # the tactic ran; new goals in `state_after`
    PROOF_FINISHED = "proof_finished"  # no goals remain
    LEAN_ERROR = "lean_error"  # Lean rejected the tactic; `message` says why
    TIMEOUT = "timeout"  # the tactic ran past its wall-clock limit
    ENV_FAILURE = "env_failure"  # the environment broke (crash, protocol error), not the tactic
    UNKNOWN_TO_REPLAY = "unknown_to_replay"  # the replay environment has no record of this tactic
    UNPARSABLE = "unparsable"  # the completion held no tactic
    DUPLICATE = "duplicate"  # the tactic ran but reached a state this search already holds


class TrajectoryOutcome(str, enum.Enum):
    PROVED = "proved"  # reached no goals and the whole-proof check accepted the proof
    FAILED = "failed"  # ran out of budget, steps or candidates
    REJECTED = "rejected"  # tactics closed the goal but the whole-proof check refused it
    ERROR = "error"  # the environment failed and the attempt could not be completed


@dataclass(frozen=True)
class Verdict:
    """The whole-proof check's answer. `reason` is always filled, also when `ok`."""

    ok: bool
    reason: str
    checked_by: str
    axioms: tuple[str, ...] = ()
    uses_native_decide: bool = False


@dataclass(frozen=True)
class Step:
    """One sampled (thought, tactic) and Lean's answer to it.

    `depth` is the step's position in the proof: a tactic that failed and was resampled shares
    its depth with the one that replaced it, so a viewer can show failures in place.
    """

    depth: int
    state: str
    thought: str | None
    tactic: str | None
    outcome: StepOutcome
    state_after: str | None = None
    message: str | None = None
    logprob: float | None = None
    sample_s: float = 0.0
    lean_s: float = 0.0


@dataclass(frozen=True)
class Trajectory:
    """One proof attempt on one theorem, as the search ran it."""

    theorem: str
    attempt: int
    outcome: TrajectoryOutcome
    steps: tuple[Step, ...]
    checked_by: str
    strategy: str = "sampling"
    stop_reason: str = ""
    proof: str | None = None
    verdict: Verdict | None = None
    round: int = 0
    model: str = ""
    split: str = ""
    seed: int | None = None
    elapsed_s: float = 0.0

    SCHEMA = "trajectory/1"

    @property
    def proved(self) -> bool:
        return self.outcome is TrajectoryOutcome.PROVED

    @property
    def replay(self) -> bool:
        return self.checked_by == REPLAY_LABEL


RECORD_TYPES: dict[str, type] = {
    cls.SCHEMA.split("/")[0]: cls for cls in (Theorem, TracedStep, ThoughtStep, Trajectory)
}


# ---------------------------------------------------------------- JSON form


def to_json(record: Any) -> dict[str, Any]:
    """A record as a JSON-ready dict, with its schema tag first."""
    out: dict[str, Any] = {"schema": record.SCHEMA}
    out.update(_encode(record))
    return out


def from_json(data: dict[str, Any], cls: type[R]) -> R:
    """Rebuild a record of type `cls`; raises SchemaError on a wrong kind, version or field."""
    if not isinstance(data, dict):
        raise SchemaError(f"expected a JSON object, got {type(data).__name__}")
    tag = data.get("schema")
    kind, _, version = cls.SCHEMA.partition("/")
    if not isinstance(tag, str) or "/" not in tag:
        raise SchemaError(f"missing or malformed 'schema' field (expected {cls.SCHEMA!r})")
    got_kind, _, got_version = tag.partition("/")
    if got_kind != kind:
        raise SchemaError(f"record is a {got_kind!r}, expected a {kind!r}")
    if not got_version.isdigit() or int(got_version) > int(version):
        raise SchemaError(f"schema {tag!r} is newer than this leanstar reads ({cls.SCHEMA!r})")
    body = {k: v for k, v in data.items() if k != "schema"}
    return _decode(body, cls, path=kind)


_PLAIN = (str, int, float, bool, type(None))


def _encode(value: Any) -> Any:
    if type(value) in _PLAIN:  # exact types: str-valued enums fall through to their .value
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    return value


def _decode(value: Any, tp: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise SchemaError(f"{path}: must not be null")
        (inner,) = [a for a in args if a is not type(None)]
        return _decode(value, inner, path)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise SchemaError(f"{path}: expected an object for {tp.__name__}")
        hints, names = _fields(tp)
        unknown = set(value) - names
        if unknown:
            raise SchemaError(f"{path}: unknown field(s) {sorted(unknown)} for {tp.__name__}")
        kwargs = {k: _decode(v, hints[k], f"{path}.{k}") for k, v in value.items()}
        try:
            return tp(**kwargs)
        except TypeError as e:
            raise SchemaError(f"{path}: {e}") from None
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise SchemaError(f"{path}: {value!r} is not one of {[m.value for m in tp]}") from None
    if origin is tuple:
        item_tp = typing.get_args(tp)[0]
        if not isinstance(value, list):
            raise SchemaError(f"{path}: expected a list")
        return tuple(_decode(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise SchemaError(f"{path}: expected a list")
        return [_decode(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise SchemaError(f"{path}: expected an object")
        return dict(value)
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp in (int, str, bool) and type(value) is tp:
        return value
    raise SchemaError(f"{path}: expected {getattr(tp, '__name__', tp)}, got {value!r}")


@functools.cache
def _fields(cls: type) -> tuple[dict[str, Any], frozenset[str]]:
    """Resolved field types and names of a record class (resolving is slow; records are many)."""
    return typing.get_type_hints(cls), frozenset(f.name for f in dataclasses.fields(cls))
