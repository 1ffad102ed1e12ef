"""From a sampled completion to a candidate step: its thought, its tactic and its score.

The score is the log-probability the prover gave the step, summed over the tokens of the tactic
block's body (`score: tactic`) or over everything up to the end of that body (`score:
thought_tactic`); the fences and anything after the block are left out either way, so two
candidates are compared on what they say, not on how they end.
"""

from __future__ import annotations

from dataclasses import dataclass

from leanstar.generation.base import Sample
from leanstar.prompting import Parsed, parse_completion, tactic_span


@dataclass(frozen=True)
class Candidate:
    thought: str | None  # None when the prover writes no thoughts
    tactic: str
    score: float
    sample: Sample


@dataclass(frozen=True)
class Garbled:
    """A completion without a usable tactic (the search records it as UNPARSABLE)."""

    thought: str | None
    reason: str
    score: float
    sample: Sample


def candidate(sample: Sample, *, with_thoughts: bool, score: str) -> Candidate | Garbled:
    parsed = parse_completion(sample.text)
    if not isinstance(parsed, Parsed):
        thought = sample.text.strip() if with_thoughts else None
        return Garbled(thought, parsed.reason, sample.logprob, sample)
    span = tactic_span(sample.text)
    assert span is not None  # parse_completion found the same block
    start = span[0] if score == "tactic" else 0
    value = sample.logprob_of_span(start, span[1]) if sample.token_logprobs else sample.logprob
    thought = parsed.thought if with_thoughts else None
    return Candidate(thought, parsed.tactic, value, sample)
