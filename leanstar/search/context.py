"""What one search attempt works with: the shared sampler and environment, timed, and the record
of its steps.

`SearchContext` is shared by every attempt on one node: it builds prompts (cached per state, as
many attempts see the same states), sends them through the batcher, parses the answers into
candidates, and runs Lean calls while the meter counts them. `Recorder` collects one attempt's
steps and turns them into a `Trajectory`; a proof counts only after `env.verify` accepted it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from leanstar.generation.base import SamplingParams
from leanstar.lean.env import (
    ProofEnv,
    ProofState,
    StartResult,
    TacticResult,
    assemble_proof,
    message_of,
    outcome_of,
)
from leanstar.prompting import prover_prompt
from leanstar.records import Step, StepOutcome, Theorem, Trajectory, TrajectoryOutcome, Verdict
from leanstar.search.batcher import Batcher
from leanstar.search.candidates import Candidate, Garbled, candidate
from leanstar.search.config import SearchConfig
from leanstar.search.meter import Meter

PROMPT_CACHE = 4096


class SearchContext:
    def __init__(
        self,
        cfg: SearchConfig,
        env: ProofEnv,
        batcher: Batcher,
        meter: Meter,
        tokenizer: Any = None,
        round: int = 0,
    ) -> None:
        self.cfg, self.env, self.batcher, self.meter = cfg, env, batcher, meter
        self.tokenizer = tokenizer
        self.round = round
        self._prompts: OrderedDict[str, str] = OrderedDict()

    def params(self, n: int) -> SamplingParams:
        g = self.cfg.generator
        return SamplingParams(
            n=n,
            temperature=g.temperature,
            top_p=g.top_p,
            max_new_tokens=g.max_new_tokens,
            stop=tuple(g.stop),
        )

    def prompt(self, goals: str) -> str:
        text = self._prompts.get(goals)
        if text is None:
            text = prover_prompt(goals, self.cfg.with_thoughts, self.tokenizer)
            self._prompts[goals] = text
            if len(self._prompts) > PROMPT_CACHE:
                self._prompts.popitem(last=False)
        return text

    async def propose(self, goals: str, n: int) -> tuple[list[Candidate | Garbled], float]:
        """`n` candidate steps from the state `goals`, and the seconds the search waited."""
        t0 = time.perf_counter()
        samples = await self.batcher.sample(self.prompt(goals), self.params(n))
        waited = time.perf_counter() - t0
        cfg = self.cfg
        return [candidate(s, with_thoughts=cfg.with_thoughts, score=cfg.score) for s in samples], (
            waited
        )

    async def start(self, theorem: Theorem) -> tuple[StartResult, float]:
        return await self._lean(self.env.start(theorem))

    async def run_tactic(self, state: ProofState, tactic: str) -> tuple[TacticResult, float]:
        return await self._lean(self.env.run_tactic(state, tactic), tactic=True)

    async def verify(self, theorem: Theorem, tactics: tuple[str, ...]) -> Verdict:
        verdict, _ = await self._lean(self.env.verify(theorem, tactics))
        return verdict

    async def _lean(self, call, tactic: bool = False) -> tuple[Any, float]:
        self.meter.lean_start(tactic)
        t0 = time.perf_counter()
        try:
            return await call, time.perf_counter() - t0
        finally:
            self.meter.lean_end()


@dataclass
class Recorder:
    """One attempt's steps, in the order they were tried."""

    ctx: SearchContext
    theorem: Theorem
    attempt: int
    strategy: str
    started: float = field(default_factory=time.perf_counter)
    steps: list[Step] = field(default_factory=list)

    def garbled(self, depth: int, goals: str, g: Garbled, sample_s: float) -> Step:
        return self._add(
            Step(
                depth,
                goals,
                g.thought,
                None,
                StepOutcome.UNPARSABLE,
                message=g.reason,
                logprob=g.score,
                sample_s=sample_s,
            )
        )

    def tried(
        self,
        depth: int,
        goals: str,
        c: Candidate,
        result: TacticResult,
        sample_s: float,
        lean_s: float,
        duplicate_of: str | None = None,
    ) -> Step:
        """A candidate and Lean's answer; `duplicate_of` says why a new state was not taken."""
        state_after = result.goals if isinstance(result, ProofState) else None
        outcome, message = outcome_of(result), message_of(result)
        if duplicate_of is not None:
            outcome, message = StepOutcome.DUPLICATE, duplicate_of
        if outcome is StepOutcome.PROOF_FINISHED:
            state_after = "no goals"
        return self._add(
            Step(
                depth,
                goals,
                c.thought,
                c.tactic,
                outcome,
                state_after=state_after,
                message=message,
                logprob=c.score,
                sample_s=sample_s,
                lean_s=lean_s,
            )
        )

    def _add(self, step: Step) -> Step:
        self.steps.append(step)
        return step

    def finish(
        self,
        outcome: TrajectoryOutcome,
        stop_reason: str,
        tactics: tuple[str, ...] | None = None,
        verdict: Verdict | None = None,
    ) -> Trajectory:
        g = self.ctx.cfg.generator
        return Trajectory(
            theorem=self.theorem.name,
            attempt=self.attempt,
            outcome=outcome,
            steps=tuple(self.steps),
            checked_by=self.ctx.env.label,
            strategy=self.strategy,
            stop_reason=stop_reason,
            proof=assemble_proof(tactics) if tactics is not None else None,
            verdict=verdict,
            round=self.ctx.round,
            model=g.model,
            split=self.theorem.split,
            seed=g.seed,
            elapsed_s=round(time.perf_counter() - self.started, 4),
        )

    async def judge(self, tactics: tuple[str, ...]) -> Trajectory:
        """The attempt closed every goal with `tactics`: the whole-proof check decides."""
        verdict = await self.ctx.verify(self.theorem, tactics)
        if verdict.ok:
            return self.finish(TrajectoryOutcome.PROVED, "proved", tactics, verdict)
        reason = f"whole-proof check refused: {verdict.reason}"
        return self.finish(TrajectoryOutcome.REJECTED, reason, tactics, verdict)


def proof_path(trajectory: Trajectory) -> list[Step]:
    """The steps that make up a proved trajectory's proof, in order, for either strategy.

    The proof ends at the last step (the runner records the closing step last). Walking back,
    each state was reached by the one step whose `state_after` it is: both searches record a
    step that reaches a state already held as DUPLICATE, so among advancing steps that step is
    unique."""
    if not trajectory.steps or trajectory.steps[-1].outcome is not StepOutcome.PROOF_FINISHED:
        return []
    reached_by = {
        s.state_after: s for s in trajectory.steps if s.outcome is StepOutcome.PROOF_STATE
    }
    path = [trajectory.steps[-1]]
    while path[-1].state in reached_by and len(path) <= len(trajectory.steps):
        path.append(reached_by[path[-1].state])
    return path[::-1]
