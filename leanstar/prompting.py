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
