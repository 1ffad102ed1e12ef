"""Answers a well-behaved teacher would give, for the fake OpenAI server (tests and benches).

`echo_teacher` reads the pair out of the last user message of a teacher conversation and
answers in the required THOUGHT:/TACTIC: shape with a thought unique to the state, so every
answer passes the quality filters.
"""

from __future__ import annotations

import hashlib
import re

_PAIR = re.compile(
    r"Proof state:\n```lean\n(?P<state>.*)\n```\nNext tactic:\n```lean\n(?P<tactic>.*)\n```\Z", re.S
)


def pair_of(body: dict) -> tuple[str, str]:
    """(state, tactic) of the pair a teacher request asks about."""
    match = _PAIR.search(body["messages"][-1]["content"])
    if match is None:
        raise ValueError("not a teacher request")
    return match["state"], match["tactic"]


def echo_teacher(path: str, body: dict) -> str:
    state, tactic = pair_of(body)
    tag = hashlib.sha256(state.encode()).hexdigest()[:8]
    goal = state.rsplit("⊢", 1)[-1].strip()[:60]
    thought = f"The goal is {goal}; looking at case {tag}, one step should make progress."
    return f"THOUGHT:\n{thought}\nTACTIC:\n```lean\n{tactic}\n```"
