"""The Lean REPL's JSON protocol (leanprover-community/repl): requests out, typed answers in.

Wire format, as the REPL's own test transcripts show it:
- a request is read up to a blank line and its lines are joined *without* newlines, so each
  request goes out as one line of JSON (newlines inside strings escaped) plus a blank line;
- an answer is pretty-printed JSON over several lines ended by a blank line (JSON strings never
  hold a raw newline, so the first blank line ends the answer); key order is not to be relied on;
- three kinds of answer: a command's (`env`, `messages`, `sorries`, `tactics`, `infotree`), a
  tactic's (`proofState`, `goals`, `messages`, `sorries`, `traces`, and `proofStatus` from about
  Lean v4.19 on), and an error (`{"message": ...}`), e.g. "Unknown proof state." or
  "Lean error:\\n...". Empty lists are left out.

Parsing is strict about types and lenient about the future: keys this module does not know are
kept by name in `extra` (the tests check that no recorded answer has any), never an exception.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

SORRY_WARNINGS = ("declaration uses 'sorry'", "declaration uses `sorry`")  # before / from v4.28
LEAN_ERROR_PREFIX = "Lean error:"


class ProtocolError(ValueError):
    """An answer that is not what the REPL protocol allows."""


@dataclass(frozen=True)
class Pos:
    line: int
    column: int


@dataclass(frozen=True)
class Message:
    severity: str  # "error" | "warning" | "info" | "trace"
    data: str
    pos: Pos | None = None
    end_pos: Pos | None = None

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    @property
    def is_sorry_warning(self) -> bool:
        return self.severity == "warning" and self.data.startswith(SORRY_WARNINGS)


@dataclass(frozen=True)
class Sorry:
    goal: str
    proof_state: int | None = None
    pos: Pos | None = None
    end_pos: Pos | None = None


@dataclass(frozen=True)
class TacticInfo:
    """One entry of a command's `tactics` list (asked for with `allTactics`)."""

    tactic: str
    goals: str
    proof_state: int | None = None
    pos: Pos | None = None
    end_pos: Pos | None = None
    used_constants: tuple[str, ...] | None = None


@dataclass(frozen=True)
class CommandResponse:
    env: int
    messages: tuple[Message, ...] = ()
    sorries: tuple[Sorry, ...] = ()
    tactics: tuple[TacticInfo, ...] | None = None
    infotree: Any = None
    extra: tuple[str, ...] = ()

    @property
    def errors(self) -> tuple[Message, ...]:
        return tuple(m for m in self.messages if m.is_error)


@dataclass(frozen=True)
class TacticResponse:
    proof_state: int
    goals: tuple[str, ...]
    messages: tuple[Message, ...] = ()
    sorries: tuple[Sorry, ...] = ()
    proof_status: str | None = None  # absent before about Lean v4.19
    traces: tuple[str, ...] | None = None
    extra: tuple[str, ...] = ()

    @property
    def errors(self) -> tuple[Message, ...]:
        return tuple(m for m in self.messages if m.is_error)


@dataclass(frozen=True)
class ErrorResponse:
    message: str

    @property
    def lean_error(self) -> str | None:
        """The Lean message of a "Lean error:" answer; None for protocol-level errors."""
        if self.message.startswith(LEAN_ERROR_PREFIX):
            return self.message[len(LEAN_ERROR_PREFIX) :].strip()
        return None


Response = CommandResponse | TacticResponse | ErrorResponse


def encode_request(request: dict[str, Any]) -> bytes:
    """One request on the wire: one line of JSON and a blank line."""
    return json.dumps(request, ensure_ascii=False).encode("utf-8") + b"\n\n"


def decode_response(raw: bytes) -> Response:
    try:
        obj = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ProtocolError(f"answer is not JSON ({e}): {raw[:200]!r}") from None
    return parse_response(obj)


def parse_response(obj: Any) -> Response:
    if not isinstance(obj, dict):
        raise ProtocolError(f"answer is not a JSON object: {obj!r:.200}")
    if "message" in obj and len(obj) == 1:
        return ErrorResponse(_typed(obj, "message", str))
    if "goals" in obj or "proofStatus" in obj or ("proofState" in obj and "env" not in obj):
        return _tactic_response(obj)
    if "env" in obj:
        return _command_response(obj)
    raise ProtocolError(f"answer of no known kind: keys {sorted(obj)}")


_COMMAND_KEYS = {"env", "messages", "sorries", "tactics", "infotree"}
_TACTIC_KEYS = {"proofState", "goals", "messages", "sorries", "proofStatus", "traces"}


def _command_response(obj: dict) -> CommandResponse:
    tactics = obj.get("tactics")
    return CommandResponse(
        env=_typed(obj, "env", int),
        messages=_list(obj, "messages", _message),
        sorries=_list(obj, "sorries", _sorry),
        tactics=None if tactics is None else _list(obj, "tactics", _tactic_info),
        infotree=obj.get("infotree"),
        extra=tuple(sorted(set(obj) - _COMMAND_KEYS)),
    )


def _tactic_response(obj: dict) -> TacticResponse:
    goals = obj.get("goals", [])
    if not isinstance(goals, list) or not all(isinstance(g, str) for g in goals):
        raise ProtocolError(f"'goals' must be a list of strings, got {goals!r:.200}")
    traces = obj.get("traces")
    if traces is not None and not (
        isinstance(traces, list) and all(isinstance(t, str) for t in traces)
    ):
        raise ProtocolError(f"'traces' must be a list of strings, got {traces!r:.200}")
    status = obj.get("proofStatus")
    if status is not None and not isinstance(status, str):
        raise ProtocolError(f"'proofStatus' must be a string, got {status!r:.200}")
    return TacticResponse(
        proof_state=_typed(obj, "proofState", int),
        goals=tuple(goals),
        messages=_list(obj, "messages", _message),
        sorries=_list(obj, "sorries", _sorry),
        proof_status=status,
        traces=None if traces is None else tuple(traces),
        extra=tuple(sorted(set(obj) - _TACTIC_KEYS)),
    )


def _typed(obj: dict, key: str, tp: type) -> Any:
    value = obj.get(key)
    if not isinstance(value, tp) or isinstance(value, bool):
        raise ProtocolError(f"{key!r} must be {tp.__name__}, got {value!r:.200}")
    return value


def _list(obj: dict, key: str, parse) -> tuple:
    value = obj.get(key, [])
    if not isinstance(value, list):
        raise ProtocolError(f"{key!r} must be a list, got {value!r:.200}")
    return tuple(parse(item) for item in value)


def _pos(value: Any) -> Pos | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ProtocolError(f"a position must be an object, got {value!r:.100}")
    return Pos(_typed(value, "line", int), _typed(value, "column", int))


def _message(item: Any) -> Message:
    if not isinstance(item, dict):
        raise ProtocolError(f"a message must be an object, got {item!r:.200}")
    return Message(
        severity=_typed(item, "severity", str),
        data=_typed(item, "data", str),
        pos=_pos(item.get("pos")),
        end_pos=_pos(item.get("endPos")),
    )


def _sorry(item: Any) -> Sorry:
    if not isinstance(item, dict):
        raise ProtocolError(f"a sorry must be an object, got {item!r:.200}")
    ps = item.get("proofState")
    return Sorry(
        goal=_typed(item, "goal", str),
        proof_state=None if ps is None else _typed(item, "proofState", int),
        pos=_pos(item.get("pos")),
        end_pos=_pos(item.get("endPos")),
    )


def _tactic_info(item: Any) -> TacticInfo:
    if not isinstance(item, dict):
        raise ProtocolError(f"a tactic entry must be an object, got {item!r:.200}")
    used = item.get("usedConstants")
    ps = item.get("proofState")
    return TacticInfo(
        tactic=_typed(item, "tactic", str),
        goals=_typed(item, "goals", str),
        proof_state=None if ps is None else _typed(item, "proofState", int),
        pos=_pos(item.get("pos")),
        end_pos=_pos(item.get("endPos")),
        used_constants=None if used is None else tuple(used),
    )


# ---------------------------------------------------------------- back to JSON (tests, logs)


def to_wire(response: Response) -> dict[str, Any]:
    """The JSON object a REPL would have printed for `response` (empty lists left out)."""
    if isinstance(response, ErrorResponse):
        return {"message": response.message}
    out: dict[str, Any] = {}
    if isinstance(response, CommandResponse):
        out["env"] = response.env
        if response.tactics is not None:
            out["tactics"] = [_tactic_info_wire(t) for t in response.tactics]
        if response.infotree is not None:
            out["infotree"] = response.infotree
    else:
        out["proofState"] = response.proof_state
        out["goals"] = list(response.goals)
        if response.proof_status is not None:
            out["proofStatus"] = response.proof_status
        if response.traces is not None:
            out["traces"] = list(response.traces)
    if response.messages:
        out["messages"] = [_message_wire(m) for m in response.messages]
    if response.sorries:
        out["sorries"] = [_sorry_wire(s) for s in response.sorries]
    return out


def _pos_wire(pos: Pos | None) -> dict | None:
    return None if pos is None else {"line": pos.line, "column": pos.column}


def _message_wire(m: Message) -> dict:
    return {
        "severity": m.severity,
        "pos": _pos_wire(m.pos),
        "endPos": _pos_wire(m.end_pos),
        "data": m.data,
    }


def _sorry_wire(s: Sorry) -> dict:
    out: dict[str, Any] = {"goal": s.goal}
    if s.proof_state is not None:
        out["proofState"] = s.proof_state
    if s.pos is not None:
        out["pos"] = _pos_wire(s.pos)
    if s.end_pos is not None:
        out["endPos"] = _pos_wire(s.end_pos)
    return out


def _tactic_info_wire(t: TacticInfo) -> dict:
    out: dict[str, Any] = {"tactic": t.tactic, "goals": t.goals}
    if t.proof_state is not None:
        out["proofState"] = t.proof_state
    if t.pos is not None:
        out["pos"] = _pos_wire(t.pos)
    if t.end_pos is not None:
        out["endPos"] = _pos_wire(t.end_pos)
    if t.used_constants is not None:
        out["usedConstants"] = list(t.used_constants)
    return out
