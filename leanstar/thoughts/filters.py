"""Quality filters for teacher answers: each rejection has one reason, and every reason counts.

Checks run in this order and the first that fails names the rejection:

    unparsable        the answer does not have the THOUGHT:/TACTIC: shape
    tactic_mismatch   the answer's tactic is not the tactic it was given (whitespace aside)
    empty_thought     nothing in the THOUGHT: section
    overlong_thought  longer than `max_thought_chars`
    reveals_tactic    the thought contains the whole tactic verbatim
    reveals_lemma     the thought names a lemma the tactic uses that the state does not show
                      (hindsight the prover will not have)
    duplicate         the same thought (case and spacing aside) was already accepted, or is the
                      few-shot example's thought copied

Pure functions, except `Deduper`, which remembers accepted thoughts.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from leanstar.prompting import TeacherAnswer, Unparsable, parse_teacher_answer


class Reason(str, enum.Enum):
    UNPARSABLE = "unparsable"
    TACTIC_MISMATCH = "tactic_mismatch"
    EMPTY_THOUGHT = "empty_thought"
    OVERLONG_THOUGHT = "overlong_thought"
    REVEALS_TACTIC = "reveals_tactic"
    REVEALS_LEMMA = "reveals_lemma"
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class Accepted:
    thought: str


@dataclass(frozen=True)
class Rejected:
    reason: Reason
    detail: str


@dataclass(frozen=True)
class FilterSettings:
    max_thought_chars: int = 1200
    reject_lemma_names: bool = True


def squash(text: str) -> str:
    """Whitespace runs as single spaces, ends stripped."""
    return " ".join(text.split())


# Lean identifiers: letters (any script), digits, subscripts, `_`, `'`, `!`, `?`, dotted parts.
_IDENT = re.compile(r"[^\W\d][\w'!?₀-₉]*(?:\.[^\W\d][\w'!?₀-₉]*)*")


def judge(text: str, state: str, tactic: str, settings: FilterSettings) -> Accepted | Rejected:
    """Everything but duplicates (see `Deduper`): is this answer a usable thought for the pair?"""
    parsed = parse_teacher_answer(text)
    if isinstance(parsed, Unparsable):
        return Rejected(Reason.UNPARSABLE, parsed.reason)
    return check_answer(parsed, state, tactic, settings)


def check_answer(
    answer: TeacherAnswer, state: str, tactic: str, settings: FilterSettings
) -> Accepted | Rejected:
    if squash(answer.tactic) != squash(tactic):
        return Rejected(Reason.TACTIC_MISMATCH, f"answer's tactic: {answer.tactic!r}")
    thought = answer.thought.strip()
    if not thought:
        return Rejected(Reason.EMPTY_THOUGHT, "the THOUGHT: section is empty")
    if len(thought) > settings.max_thought_chars:
        return Rejected(
            Reason.OVERLONG_THOUGHT, f"{len(thought)} chars > {settings.max_thought_chars}"
        )
    if contains_phrase(thought, tactic):
        return Rejected(Reason.REVEALS_TACTIC, "the thought contains the tactic verbatim")
    if settings.reject_lemma_names:
        leaked = [name for name in hindsight_names(state, tactic) if contains_phrase(thought, name)]
        if leaked:
            return Rejected(Reason.REVEALS_LEMMA, f"names {', '.join(leaked)}")
    return Accepted(thought)


def contains_phrase(text: str, phrase: str) -> bool:
    """`phrase` occurs in `text` as whole words, whitespace differences aside (so the tactic
    `simp` is not found inside "simplify" or `Nat.simp`).

    Plain substring search with the edges checked by hand: a regex per tactic would be
    compiled afresh for every answer (tactics are nearly all distinct), which measured
    0.4 ms per answer, a third of the driver's CPU per request."""
    needle = squash(phrase)
    if not needle:
        return False
    hay = squash(text)
    start = hay.find(needle)
    while start >= 0:
        end = start + len(needle)
        if (start == 0 or not _word_char(hay[start - 1], dot=True)) and (
            end == len(hay) or not _word_char(hay[end])
        ):
            return True
        start = hay.find(needle, start + 1)
    return False


def _word_char(c: str, dot: bool = False) -> bool:
    return c.isalnum() or c in "_'" or (dot and c == ".")


def hindsight_names(state: str, tactic: str) -> list[str]:
    """Lemma-like names in `tactic` (with `_` or a dot, 4+ chars) that `state` does not mention,
    with the last part of dotted names too (`Nat.succ_le_iff` also as `succ_le_iff`)."""
    shown = set(_IDENT.findall(state))
    names: list[str] = []
    for ident in _IDENT.findall(tactic):
        candidates = [ident]
        if "." in ident:
            candidates.append(ident.rsplit(".", 1)[1])
        for name in candidates:
            lemma_like = ("_" in name or "." in name) and len(name) >= 4
            if lemma_like and name not in shown and name.split(".")[0] not in shown:
                names.append(name)
    return list(dict.fromkeys(names))


class Deduper:
    """Remembers accepted thoughts; a second copy of one is a duplicate."""

    def __init__(self, seen: list[str] = ()) -> None:
        self._seen = {self.norm(t) for t in seen}

    @staticmethod
    def norm(thought: str) -> str:
        return squash(thought).lower()

    def check(self, thought: str) -> Rejected | None:
        if self.norm(thought) in self._seen:
            return Rejected(Reason.DUPLICATE, "the same thought was already accepted")
        return None

    def add(self, thought: str) -> None:
        self._seen.add(self.norm(thought))
