"""Sampling search, the Lean-STaR evaluation protocol: one attempt, one step at a time.

From the current state, sample one (thought, tactic) and run the tactic. A tactic that Lean
accepts becomes the new state; anything else (a Lean error, a timeout, an unparsable
completion, a state already on the path, an answer the replay environment does not hold) is
recorded in place and resampled. The attempt ends at a proof (judged by the whole-proof
check), after `max_steps` accepted tactics, after `max_resamples` + 1 failures at one step, or
when the theorem's time budget runs out.
"""

from __future__ import annotations

import time

from leanstar.lean.env import EnvFailure, ProofFinished, ProofState
from leanstar.records import Theorem, Trajectory, TrajectoryOutcome
from leanstar.search.candidates import Garbled
from leanstar.search.context import Recorder, SearchContext

STRATEGY = "sampling"


async def sampling_attempt(
    ctx: SearchContext, theorem: Theorem, root: ProofState, attempt: int, deadline: float
) -> Trajectory:
    rec = Recorder(ctx, theorem, attempt, STRATEGY)
    cfg = ctx.cfg
    state, path_goals, env_failures = root, {root.goals}, 0
    for depth in range(cfg.max_steps):
        failures = 0
        while True:
            if time.perf_counter() >= deadline:
                return _ended(rec, env_failures, f"time budget of {cfg.theorem_time_s:g} s spent")
            [cand], sample_s = await ctx.propose(state.goals, 1)
            if isinstance(cand, Garbled):
                rec.garbled(depth, state.goals, cand, sample_s)
            else:
                result, lean_s = await ctx.run_tactic(state, cand.tactic)
                if isinstance(result, ProofFinished):
                    rec.tried(depth, state.goals, cand, result, sample_s, lean_s)
                    return await rec.judge(result.tactics)
                if isinstance(result, ProofState) and result.goals not in path_goals:
                    rec.tried(depth, state.goals, cand, result, sample_s, lean_s)
                    state = result
                    path_goals.add(result.goals)
                    break
                duplicate = None
                if isinstance(result, ProofState):
                    duplicate = "reached a state already on this proof path; not taken"
                env_failures += isinstance(result, EnvFailure)
                rec.tried(depth, state.goals, cand, result, sample_s, lean_s, duplicate)
            failures += 1
            if failures > cfg.max_resamples:
                reason = f"{failures} failed samples at step {depth + 1}"
                return _ended(rec, env_failures, reason)
    return _ended(rec, env_failures, f"{cfg.max_steps} steps without closing the goals")


def _ended(rec: Recorder, env_failures: int, reason: str) -> Trajectory:
    """An attempt that found no proof: FAILED, or ERROR when the environment broke on the way
    (it may have cost the proof)."""
    if env_failures:
        return rec.finish(TrajectoryOutcome.ERROR, f"{reason}; {env_failures} environment failures")
    return rec.finish(TrajectoryOutcome.FAILED, reason)
