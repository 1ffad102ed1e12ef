"""Which pairs a run asks about: sampled the paper's way, each key once, minus those done."""

from __future__ import annotations

from dataclasses import dataclass

from leanstar.data import load_leandojo, sample_pairs
from leanstar.prompting import TEACHER_PROMPT_VERSION
from leanstar.records import TracedStep
from leanstar.thoughts.config import ThoughtsConfig
from leanstar.thoughts.store import thought_key


@dataclass(frozen=True)
class Job:
    key: str
    step: TracedStep


@dataclass(frozen=True)
class Plan:
    """The pairs of this run: sampled, the same pair met again, already done, still to do."""

    sampled: int
    duplicate_pairs: int
    done_before: int
    todo: list[Job]


def make_plan(cfg: ThoughtsConfig, done_keys: set[str]) -> Plan:
    """The sampled pairs, each key once, without those already done."""
    theorems = load_leandojo(cfg.input)
    steps = sample_pairs(theorems, cfg.theorems_per_file, cfg.tactics_per_theorem, cfg.seed)
    if cfg.max_pairs > 0:
        steps = steps[: cfg.max_pairs]
    jobs: dict[str, Job] = {}
    for step in steps:
        key = thought_key(
            step.state_before, step.tactic, cfg.generator.model, TEACHER_PROMPT_VERSION
        )
        jobs.setdefault(key, Job(key, step))
    todo = [job for key, job in jobs.items() if key not in done_keys]
    return Plan(len(steps), len(steps) - len(jobs), len(jobs) - len(todo), todo)
