"""`leanstar thoughts`: sample (state, tactic) pairs, ask the teacher, filter, store, export.

    pairs = sample_pairs(LeanDojo file, 5 theorems per file, 4 tactics per theorem)
    for each pair not yet in the run directory (keyed by state, tactic, teacher, prompt):
        answer = teacher(system + few-shot + pair)     many at once, retried, within budgets
        accepted -> thoughts.jsonl | rejected -> rejects.jsonl (reason) | no answer -> failures
    summary.json, then dataset/ (Hugging Face `datasets`, what SFT reads)

Each result is appended the moment it arrives, one write per line, so `kill -9` loses only
requests in flight, and the same command resumes without asking for anything twice.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

from leanstar.data import load_leandojo, sample_pairs
from leanstar.jsonl import JsonlWriter, write_json_atomic
from leanstar.prompting import TEACHER_PROMPT_VERSION, teacher_example, teacher_messages
from leanstar.records import ThoughtStep, TracedStep
from leanstar.rundir import RunDir
from leanstar.thoughts.config import ThoughtsConfig
from leanstar.thoughts.filters import Accepted, Deduper, FilterSettings, Rejected, judge
from leanstar.thoughts.limits import Budget
from leanstar.thoughts.progress import Prices, info_line, make_progress
from leanstar.thoughts.runner import Failure, RetryPolicy, Tally, ask, run_jobs
from leanstar.thoughts.store import (
    DATASET,
    FAILURES,
    REJECTS,
    SUMMARY,
    THOUGHTS,
    ThoughtFailure,
    ThoughtReject,
    load_stored,
    thought_key,
)
from leanstar.thoughts.summary import Plan, build_summary, render_summary
from leanstar.thoughts.teacher import Answer, Fatal, Teacher, make_teacher


@dataclass(frozen=True)
class Job:
    key: str
    step: TracedStep


def main(cfg: ThoughtsConfig) -> int:
    from rich.console import Console

    console = Console(stderr=True)
    run = RunDir(cfg.run_dir)
    with run:
        run.save_config(cfg)
        plan = make_plan(cfg, done_keys=load_stored(run.path).done_keys)
        start, tally, status = time.monotonic(), Tally(), "complete"
        try:
            if plan.todo:
                tally = asyncio.run(synthesize(cfg, plan, run))
        except Fatal as e:
            console.print(f"[red]leanstar thoughts: {e}[/red]")
            status = "stopped: " + str(e)
        except (KeyboardInterrupt, asyncio.CancelledError):
            status = "interrupted"
            raise
        finally:
            summary = _finish(cfg, run, plan, tally, time.monotonic() - start, status, console)
        if status.startswith("stopped"):
            return 2
        return _report(cfg, run, summary, console)


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


async def synthesize(cfg: ThoughtsConfig, plan: Plan, run: RunDir) -> Tally:
    """Ask the teacher about every pair to do, storing each result as it comes."""
    teacher = make_teacher(cfg)
    stored = load_stored(run.path)
    deduper = Deduper([teacher_example().thought, *(r.thought for r in stored.accepted)])
    tally, budget, rng = (
        Tally(),
        Budget(cfg.requests_per_minute, cfg.tokens_per_minute),
        random.Random(cfg.seed),
    )
    policy = RetryPolicy(cfg.max_retries, cfg.backoff_base_s, cfg.backoff_max_s)
    settings = FilterSettings(cfg.max_thought_chars, cfg.reject_lemma_names)
    prices = Prices(cfg.price_input_per_mtok, cfg.price_output_per_mtok)
    counts = {"accepted": 0, "rejected": 0}
    with (
        JsonlWriter(run / THOUGHTS) as accepted_out,
        JsonlWriter(run / REJECTS) as rejected_out,
        JsonlWriter(run / FAILURES) as failures_out,
        make_progress(cfg.progress) as progress,
    ):
        bar = progress.add_task("thoughts", total=len(plan.todo), info="")

        def request(job: Job):
            messages = teacher_messages(job.step.state_before, job.step.tactic)
            seed = (int(job.key[:8], 16) + cfg.generator.seed) % 2**31
            return ask(teacher, messages, seed, budget, policy, tally, rng)

        def on_result(job: Job, result: Answer | Failure) -> None:
            if isinstance(result, Failure):
                tally.failed += 1
                failures_out.write(_failure(job, result, teacher))
            else:
                verdict = judge(result.text, job.step.state_before, job.step.tactic, settings)
                if isinstance(verdict, Accepted):
                    verdict = deduper.check(verdict.thought) or verdict
                if isinstance(verdict, Accepted):
                    deduper.add(verdict.thought)
                    accepted_out.write(_thought(job, verdict.thought, result, teacher))
                else:
                    rejected_out.write(_reject(job, verdict, result, teacher))
                counts["accepted" if isinstance(verdict, Accepted) else "rejected"] += 1
            progress.update(
                bar,
                advance=1,
                info=info_line(
                    counts["accepted"],
                    counts["rejected"],
                    tally.failed,
                    sum(tally.retries.values()),
                    tally.prompt_tokens,
                    tally.completion_tokens,
                    prices,
                ),
            )

        try:
            await run_jobs(plan.todo, cfg.concurrency, request, on_result)
        finally:
            await teacher.aclose()
    return tally


def _thought(job: Job, thought: str, answer: Answer, teacher: Teacher) -> ThoughtStep:
    return ThoughtStep(
        state=job.step.state_before,
        thought=thought,
        tactic=job.step.tactic,
        theorem=job.step.theorem,
        source="teacher",
        teacher=teacher.name,
        round=0,
        prompt_version=TEACHER_PROMPT_VERSION,
        key=job.key,
        usage=answer.usage,
    )


def _reject(job: Job, verdict: Rejected, answer: Answer, teacher: Teacher) -> ThoughtReject:
    return ThoughtReject(
        key=job.key,
        reason=verdict.reason.value,
        detail=verdict.detail,
        state=job.step.state_before,
        tactic=job.step.tactic,
        theorem=job.step.theorem,
        teacher=teacher.name,
        prompt_version=TEACHER_PROMPT_VERSION,
        answer=answer.text,
        usage=answer.usage,
    )


def _failure(job: Job, failure: Failure, teacher: Teacher) -> ThoughtFailure:
    return ThoughtFailure(
        key=job.key,
        kind=failure.kind,
        error=failure.error,
        attempts=failure.attempts,
        theorem=job.step.theorem,
        teacher=teacher.name,
        prompt_version=TEACHER_PROMPT_VERSION,
    )


def _finish(cfg, run, plan, tally, elapsed_s, status, console) -> dict:
    summary = build_summary(
        teacher=cfg.generator.model,
        prompt_version=TEACHER_PROMPT_VERSION,
        input_path=cfg.input,
        plan=plan,
        tally=tally,
        stored=load_stored(run.path),
        elapsed_s=elapsed_s,
        prices=Prices(cfg.price_input_per_mtok, cfg.price_output_per_mtok),
        status=status,
    )
    write_json_atomic(run / SUMMARY, summary)
    console.print(render_summary(summary))
    return summary


def _report(cfg: ThoughtsConfig, run: RunDir, summary: dict, console) -> int:
    """Export when every pair has an outcome; exit 1 while some still await an answer."""
    missing = summary["this_run"]["failed"]
    if missing:
        console.print(
            f"{missing} pair(s) got no answer after {cfg.max_retries} retries "
            f"(see {run / FAILURES}); run the same command again to retry them"
        )
        return 1
    run.mark_done("synthesis", accepted=summary["run_dir"]["accepted"])
    if cfg.export:
        from leanstar.thoughts.export import export_dataset

        ds = export_dataset(run / THOUGHTS, run / DATASET, cfg.push_to_hub)
        console.print(f"dataset: {len(ds)} rows in {run / DATASET}")
    return 0
