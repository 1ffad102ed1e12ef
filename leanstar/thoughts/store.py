"""What thought synthesis keeps in its run directory, and how a resumed run reads it back.

    thoughts.jsonl   accepted `ThoughtStep` records (what SFT reads)
    rejects.jsonl    `ThoughtReject`: answered, but a quality filter refused it (with the reason)
    failures.jsonl   `ThoughtFailure`: no usable answer after all retries; retried on resume
    summary.json     the counts of the last run, over the whole directory
    dataset/         the accepted records as a Hugging Face dataset

A pair is done once its key is in thoughts.jsonl or rejects.jsonl: a resumed run never asks
for it again. The key hashes (state, tactic, teacher, prompt version), so a new teacher or a new
prompt is new work, while the same pair met twice in the input is asked once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from leanstar.jsonl import read_records
from leanstar.records import ThoughtStep

THOUGHTS = "thoughts.jsonl"
REJECTS = "rejects.jsonl"
FAILURES = "failures.jsonl"
SUMMARY = "summary.json"
DATASET = "dataset"


def thought_key(state: str, tactic: str, teacher: str, prompt_version: str) -> str:
    """A stable id of one request: the same inputs always give the same key."""
    digest = hashlib.sha256()
    for part in (state, tactic, teacher, prompt_version):
        digest.update(part.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()[:32]


@dataclass(frozen=True)
class ThoughtReject:
    """An answer a quality filter refused; `answer` is the teacher's text, untouched."""

    key: str
    reason: str
    detail: str
    state: str
    tactic: str
    theorem: str
    teacher: str
    prompt_version: str
    answer: str
    usage: dict[str, int] = field(default_factory=dict)

    SCHEMA = "thought_reject/1"


@dataclass(frozen=True)
class ThoughtFailure:
    """A request that got no usable answer (`kind`: rate_limit, server_error, timeout,
    connection, malformed, refused); the pair stays to do and a resumed run asks again."""

    key: str
    kind: str
    error: str
    attempts: int
    theorem: str
    teacher: str
    prompt_version: str

    SCHEMA = "thought_failure/1"


@dataclass
class Stored:
    """Everything already in a run directory."""

    accepted: list[ThoughtStep]
    rejected: list[ThoughtReject]
    failures: list[ThoughtFailure]

    @property
    def done_keys(self) -> set[str]:
        return {r.key for r in self.accepted} | {r.key for r in self.rejected}


def load_stored(run_dir: Path) -> Stored:
    return Stored(
        accepted=read_records(run_dir / THOUGHTS, ThoughtStep),
        rejected=read_records(run_dir / REJECTS, ThoughtReject),
        failures=read_records(run_dir / FAILURES, ThoughtFailure),
    )
