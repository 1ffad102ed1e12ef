"""Prompt formats, as pure functions: what the prover sees, what it must write, and parsing.

The prover reads a Lean proof state and writes a short informal thought followed by exactly one
tactic in a ```lean block (Lean-STaR), or only the block (the tactic-only baseline):

    The goal is an equality of natural numbers that holds by computation, so
    normalising both sides should close it.
    ```lean
    norm_num
    ```

With a tokenizer that has a chat template the state goes in a user message and the completion
is the assistant's answer; without one, a plain text prompt ends where the completion begins.
Parsing never raises: a completion without a tactic is an `Unparsable` value, a distinct search
outcome.

Change PROMPT_VERSION whenever a string here changes, so records made with an older prompt can
be told apart (thought synthesis keys its cache on it).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

PROMPT_VERSION = "prover-v1"

FENCE = "```"
TACTIC_OPEN = "```lean\n"

_INSTRUCTION_THOUGHT = (
    "Think briefly about how to make progress on this goal, then give the next tactic "
    "in a ```lean block."
)
_INSTRUCTION_TACTIC = "Give the next tactic in a ```lean block."


def _state_block(state: str) -> str:
    return f"Lean 4 proof state:\n```lean\n{state.rstrip()}\n```"


def prover_user_message(state: str, with_thought: bool = True) -> str:
    """The user turn for a chat model."""
    instruction = _INSTRUCTION_THOUGHT if with_thought else _INSTRUCTION_TACTIC
    return f"{_state_block(state)}\n{instruction}"


def prover_messages(state: str, with_thought: bool = True) -> list[dict[str, str]]:
    return [{"role": "user", "content": prover_user_message(state, with_thought)}]


def plain_prompt(state: str, with_thought: bool = True) -> str:
    """The prompt for a model without a chat template; the completion follows directly."""
    head = "Thought and tactic:\n" if with_thought else "Tactic:\n"
    return f"{_state_block(state)}\n{head}"


def prover_prompt(state: str, with_thought: bool = True, tokenizer: Any = None) -> str:
    """The full prompt string: the tokenizer's chat template when it has one, else plain."""
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            prover_messages(state, with_thought), tokenize=False, add_generation_prompt=True
        )
    return plain_prompt(state, with_thought)


def prover_target(tactic: str, thought: str | None = None) -> str:
    """What the prover should write: the thought (if any), then the tactic block."""
    block = f"{TACTIC_OPEN}{tactic.strip()}\n{FENCE}"
    if thought is None or not thought.strip():
        return block
    return f"{thought.strip()}\n{block}"


# ---------------------------------------------------------------- parsing


@dataclass(frozen=True)
class Parsed:
    """A completion that held a tactic. `thought` is "" when the model wrote none."""

    thought: str
    tactic: str
    closed: bool  # the ```lean block was closed (False: cut off by a stop string or length)
    trailing: str = ""  # text after the block, ignored


@dataclass(frozen=True)
class Unparsable:
    """A completion with no usable tactic; `reason` says what was missing."""

    reason: str
    text: str


_OPEN = re.compile(r"```[ \t]*(?:lean4?|tactic)?[ \t]*\n")


def parse_completion(text: str) -> Parsed | Unparsable:
    """Split a completion into (thought, tactic).

    The tactic is the first fenced block (```lean, ```lean4 or a bare ```); everything before it
    is the thought. A block cut off before its closing fence still counts (samplers usually stop
    on the fence). Text after the block, including further blocks, is kept in `trailing` and
    never run.
    """
    match = _OPEN.search(text)
    if match is None:
        reason = "no ```lean block" if FENCE not in text else "code fence without a newline"
        return Unparsable(reason, text)
    thought = text[: match.start()].strip()
    rest = text[match.end() :]
    close = rest.find(FENCE)
    body, trailing = (rest, "") if close < 0 else (rest[:close], rest[close + len(FENCE) :])
    tactic = _strip_blank_lines(body)
    if not tactic:
        return Unparsable("empty ```lean block", text)
    return Parsed(thought=thought, tactic=tactic, closed=close >= 0, trailing=trailing.strip())


def tactic_span(text: str) -> tuple[int, int] | None:
    """Where the tactic `parse_completion` finds lies in `text`: (start, end) offsets of the
    block's body without its surrounding whitespace (fences excluded), or None when there is no
    block. Used to score only the tactic's tokens of a completion."""
    match = _OPEN.search(text)
    if match is None:
        return None
    close = text.find(FENCE, match.end())
    start, end = match.end(), len(text) if close < 0 else close
    body = text[start:end]
    return start + len(body) - len(body.lstrip()), end - (len(body) - len(body.rstrip()))


def _strip_blank_lines(body: str) -> str:
    lines = body.split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(line.rstrip() for line in lines)


# ---------------------------------------------------------------- teacher (thought synthesis)
#
# The teacher sees a proof state and the ground-truth tactic and writes the thought that leads
# from the goal to that tactic (Lean-STaR's retrospective rationale). Its answer has two
# labelled sections, parsed strictly: anything else is unparsable, not guessed at.
#
#     THOUGHT:
#     <about two sentences>
#     TACTIC:
#     ```lean
#     <the given tactic, verbatim>
#     ```
#
# Change TEACHER_PROMPT_VERSION whenever a teacher string or the few-shot example changes:
# synthesized records are keyed on it, so a new prompt never reuses an old answer.

TEACHER_PROMPT_VERSION = "teacher-v1"

TEACHER_SYSTEM = (
    "You are an expert in Lean 4 and Mathlib who explains proofs. You are shown a Lean 4 "
    "proof state and the tactic that a finished proof applies next. Write the thought a "
    "mathematician has just before choosing that tactic.\n"
    "- Start from the goal (and the hypotheses that matter) and reason forward.\n"
    "- Be brief: about two sentences of informal mathematics.\n"
    "- Never write the tactic, any Lean code, or the names of the lemmas the tactic uses: you "
    "are reasoning before you know the answer, so describe the idea instead.\n"
    "- End where the tactic is the natural next step.\n"
    "Answer in exactly this format, with nothing before or after it:\n"
    "THOUGHT:\n<your thought>\nTACTIC:\n```lean\n<the given tactic, copied verbatim>\n```"
)

# The few-shot example: a real step of LeanDojo Benchmark 4 (bundled sample), chosen because its
# tactic names three lemmas the thought has to explain without naming.
TEACHER_EXAMPLE_SOURCE = "bundled:leandojo-benchmark4-sample.json"
TEACHER_EXAMPLE_THEOREM = "NNReal.le_inv_iff_mul_le"
TEACHER_EXAMPLE_INDEX = 0
TEACHER_EXAMPLE_THOUGHT = (
    "The left side bounds r by the inverse of p, while the right side has no inverse, so the "
    "inverse has to be cleared. Since p ≠ 0 makes p positive, multiplying the left inequality "
    "by p keeps it equivalent; then p * p⁻¹ collapses to 1 and reordering the product leaves "
    "r * p ≤ 1."
)


@dataclass(frozen=True)
class TeacherExample:
    state: str
    tactic: str
    thought: str


def teacher_example() -> TeacherExample:
    """The few-shot example: the bundled record's state and tactic with our thought."""
    return _teacher_example()


def _load_teacher_example() -> TeacherExample:
    from leanstar.data import load_leandojo  # reads a small bundled JSON file, once

    for thm in load_leandojo(TEACHER_EXAMPLE_SOURCE):
        if thm.full_name == TEACHER_EXAMPLE_THEOREM:
            step = thm.steps[TEACHER_EXAMPLE_INDEX]
            return TeacherExample(step.state_before, step.tactic, TEACHER_EXAMPLE_THOUGHT)
    raise LookupError(f"{TEACHER_EXAMPLE_SOURCE}: no theorem {TEACHER_EXAMPLE_THEOREM!r}")


_teacher_example = functools.cache(_load_teacher_example)


def teacher_user_message(state: str, tactic: str) -> str:
    return (
        f"Proof state:\n```lean\n{state.rstrip()}\n```\n"
        f"Next tactic:\n```lean\n{tactic.strip()}\n```"
    )


def teacher_answer(thought: str, tactic: str) -> str:
    """An answer in the exact format the teacher must write."""
    return f"THOUGHT:\n{thought.strip()}\nTACTIC:\n```lean\n{tactic.strip()}\n```"


def teacher_messages(
    state: str, tactic: str, example: TeacherExample | None = None
) -> list[dict[str, str]]:
    """System instructions, the few-shot exchange, then the pair to explain."""
    ex = example or teacher_example()
    return [
        {"role": "system", "content": TEACHER_SYSTEM},
        {"role": "user", "content": teacher_user_message(ex.state, ex.tactic)},
        {"role": "assistant", "content": teacher_answer(ex.thought, ex.tactic)},
        {"role": "user", "content": teacher_user_message(state, tactic)},
    ]


def teacher_prompt(state: str, tactic: str, tokenizer: Any = None) -> str:
    """The teacher conversation as one prompt string for a local model: the tokenizer's chat
    template when it has one, else the turns as labelled plain text ending where the answer
    begins."""
    return chat_to_prompt(teacher_messages(state, tactic), tokenizer)


def chat_to_prompt(messages: list[dict[str, str]], tokenizer: Any = None) -> str:
    """Chat messages as one prompt string ending where the assistant's answer begins."""
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    turns = [f"{m['role'].capitalize()}:\n{m['content']}" for m in messages]
    return "\n\n".join(turns) + "\n\nAssistant:\n"


@dataclass(frozen=True)
class TeacherAnswer:
    thought: str
    tactic: str


_TEACHER_ANSWER = re.compile(
    r"\A\s*THOUGHT:[ \t]*\n?(?P<thought>.*?)\n[ \t]*TACTIC:[ \t]*\n"
    r"```[ \t]*(?:lean4?)?[ \t]*\n(?P<tactic>.*?)\n[ \t]*```[ \t]*\Z",
    re.DOTALL,
)


def parse_teacher_answer(text: str) -> TeacherAnswer | Unparsable:
    """The thought and tactic of a teacher answer, or why it does not have the required shape.

    Strict: THOUGHT: first, then TACTIC: with one fenced block, then nothing but whitespace.
    The thought may be empty here (a quality filter rejects it with its own reason).
    """
    body = text.strip()
    match = _TEACHER_ANSWER.match(body)
    if match is not None:
        return TeacherAnswer(match["thought"].strip(), _strip_blank_lines(match["tactic"]))
    return Unparsable(_teacher_shape_error(body), text)


def _teacher_shape_error(body: str) -> str:
    if not body:
        return "empty answer"
    if not body.startswith("THOUGHT:"):
        return "does not start with THOUGHT:"
    if "\nTACTIC:" not in body:
        return "no TACTIC: section"
    after = body.split("\nTACTIC:", 1)[1].lstrip(" \t")
    if not after.startswith("\n```"):
        return "TACTIC: is not followed by a ``` block"
    if after.count(FENCE) < 2:
        return "the tactic block is not closed"
    return "text after the tactic block"
