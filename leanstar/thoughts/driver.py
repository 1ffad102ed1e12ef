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

from leanstar.config import ConfigError
from leanstar.jsonl import JsonlWriter, write_json_atomic
from leanstar.prompting import TEACHER_PROMPT_VERSION, teacher_example, teacher_messages
from leanstar.records import ThoughtStep
from leanstar.rundir import RunDir
from leanstar.thoughts.config import ThoughtsConfig
from leanstar.thoughts.filters import Accepted, Deduper, FilterSettings, Rejected, judge
from leanstar.thoughts.limits import Budget
from leanstar.thoughts.plan import Job, Plan, make_plan
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
)
from leanstar.thoughts.summary import build_summary, render_summary
from leanstar.thoughts.teacher import Answer, Fatal, make_teacher


def main(cfg: ThoughtsConfig) -> int:
    from rich.console import Console

    console = Console(stderr=True)
    try:
        cfg.check()
    except ConfigError as e:
        console.print(f"leanstar: config error: {e}", markup=False)
        return 2
    run = RunDir(cfg.run_dir)
    with run:
        run.save_config(cfg)
        plan = make_plan(cfg, done_keys=load_stored(run.path).done_keys)
        start, tally, status, error = time.monotonic(), Tally(), "complete", ""
        try:
            if plan.todo:
                tally = asyncio.run(synthesize(cfg, plan, run))
        except Fatal as e:
            status, error = "stopped", str(e)
            console.print(f"leanstar thoughts: {e}", style="red", markup=False)
        except (KeyboardInterrupt, asyncio.CancelledError):
            status = "interrupted"
            raise
        finally:
            if status == "complete" and tally.failed:
                status = "incomplete"
            summary = _finish(cfg, run, plan, tally, time.monotonic() - start, status, error)
            if tally.requests or status != "stopped":
                console.print(render_summary(summary))
        if status == "stopped":
            return 2
        return _report(cfg, run, summary, console)


async def synthesize(cfg: ThoughtsConfig, plan: Plan, run: RunDir) -> Tally:
    """Ask the teacher about every pair to do, storing each result as it comes."""
    teacher = make_teacher(cfg)
    tally = Tally()
    budget = Budget(cfg.requests_per_minute, cfg.tokens_per_minute)
    policy = RetryPolicy(cfg.max_retries, cfg.backoff_base_s, cfg.backoff_max_s)
    rng = random.Random(cfg.seed)

    def request(job: Job):
        messages = teacher_messages(job.step.state_before, job.step.tactic)
        seed = (int(job.key[:8], 16) + cfg.generator.seed) % 2**31  # reproducible per pair
        return ask(teacher, messages, seed, budget, policy, tally, rng)

    try:
        with Recorder(cfg, run, teacher.name, tally, total=len(plan.todo)) as record:
            await run_jobs(plan.todo, cfg.workers, request, record)
    finally:
        await teacher.aclose()
    return tally


class Recorder:
    """Files each result the moment it arrives (accepted, rejected with its reason, or failed)
    and keeps the progress bar current."""

    def __init__(self, cfg: ThoughtsConfig, run: RunDir, teacher: str, tally: Tally, total: int):
        self.teacher, self.tally = teacher, tally
        self.settings = FilterSettings(cfg.max_thought_chars, cfg.reject_lemma_names)
        self.prices = Prices(cfg.price_input_per_mtok, cfg.price_output_per_mtok)
        accepted = load_stored(run.path).accepted
        self.deduper = Deduper([teacher_example().thought, *(r.thought for r in accepted)])
        self.accepted = self.rejected = 0
        self._files = [JsonlWriter(run / name) for name in (THOUGHTS, REJECTS, FAILURES)]
        self._progress = make_progress(cfg.progress)
        self._bar = self._progress.add_task("thoughts", total=total, info="")

    def __enter__(self) -> Recorder:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()
        for f in self._files:
            f.close()

    def __call__(self, job: Job, result: Answer | Failure) -> None:
        thoughts, rejects, failures = self._files
        if isinstance(result, Failure):
            self.tally.failed += 1
            failures.write(self._failure(job, result))
        else:
            verdict = self.judge(job, result)
            if isinstance(verdict, Accepted):
                self.accepted += 1
                thoughts.write(self._thought(job, verdict.thought, result))
            else:
                self.rejected += 1
                rejects.write(self._reject(job, verdict, result))
        t = self.tally
        info = info_line(
            self.accepted, self.rejected, t.failed, sum(t.retries.values()),
            t.prompt_tokens, t.completion_tokens, self.prices,
        )  # fmt: skip
        self._progress.update(self._bar, advance=1, info=info)

    def judge(self, job: Job, answer: Answer) -> Accepted | Rejected:
        verdict = judge(answer.text, job.step.state_before, job.step.tactic, self.settings)
        if isinstance(verdict, Accepted):
            duplicate = self.deduper.check(verdict.thought)
            if duplicate is not None:
                return duplicate
            self.deduper.add(verdict.thought)
        return verdict

    def _thought(self, job: Job, thought: str, answer: Answer) -> ThoughtStep:
        return ThoughtStep(
            state=job.step.state_before,
            thought=thought,
            tactic=job.step.tactic,
            theorem=job.step.theorem,
            source="teacher",
            teacher=self.teacher,
            round=0,
            prompt_version=TEACHER_PROMPT_VERSION,
            key=job.key,
            usage=answer.usage,
        )

    def _reject(self, job: Job, verdict: Rejected, answer: Answer) -> ThoughtReject:
        return ThoughtReject(
            key=job.key,
            reason=verdict.reason.value,
            detail=verdict.detail,
            state=job.step.state_before,
            tactic=job.step.tactic,
            theorem=job.step.theorem,
            teacher=self.teacher,
            prompt_version=TEACHER_PROMPT_VERSION,
            answer=answer.text,
            usage=answer.usage,
        )

    def _failure(self, job: Job, failure: Failure) -> ThoughtFailure:
        return ThoughtFailure(
            key=job.key,
            kind=failure.kind,
            error=failure.error,
            attempts=failure.attempts,
            theorem=job.step.theorem,
            teacher=self.teacher,
            prompt_version=TEACHER_PROMPT_VERSION,
        )


def _finish(cfg, run, plan, tally, elapsed_s, status, error) -> dict:
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
        error=error,
    )
    write_json_atomic(run / SUMMARY, summary)
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
