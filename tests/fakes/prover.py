"""Instant stand-ins for a prover and for Lean, for search tests and benchmarks.

- `SteeredGenerator` answers every recorded LeanDojo state with its ground-truth tactic (and a
  thought), so a search against the replay environment can find the recorded proofs. A
  `script(state, k, truth)` overrides the answer to the k-th sample drawn from a state (errors,
  garbage, detours), returning a completion text or a whole `Sample`.
- `FaultyEnv` wraps an environment and answers chosen tactics with chosen results (Lean errors,
  timeouts, environment failures, states already seen), optionally after a delay.
- `chain_theorems` makes synthetic traced theorems of any size for benchmarks.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections import Counter
from collections.abc import Callable

from leanstar.data.leandojo import LeanDojoTheorem
from leanstar.generation.base import Sample, SamplingParams
from leanstar.lean.env import ProofEnv, ProofState, TacticResult
from leanstar.lean.replay import normalize_tactic
from leanstar.prompting import prover_prompt, prover_target
from leanstar.records import Theorem, TracedStep, Verdict

GARBAGE = "I am not sure what to do here."
Script = Callable[[str, int, "str | None"], "str | Sample | None"]


def fake_sample(text: str, per_token: float = -0.1) -> Sample:
    """A sample whose "tokens" are the words of `text` (each with the spaces before it), each
    of log-prob `per_token`."""
    pieces = re.findall(r"\s*\S+|\s+", text) or [""]
    ends = tuple(itertools.accumulate(len(p) for p in pieces))
    lps = tuple(per_token for _ in pieces)
    return Sample(text, sum(lps), len(pieces), "stop", lps, ends)


def thought_for(state: str) -> str:
    first_goal = next((ln for ln in state.splitlines() if ln.startswith("⊢")), "the goal")
    return f"Looking at {first_goal[:40]}, the recorded next step should make progress."


class _FakeGenerator:
    """What the fake samplers share: an optional delay per call, the prompts per call, and
    `n` answers per prompt from `_answer`."""

    tokenizer = None

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.drawn: Counter[str] = Counter()  # samples drawn per state (or prompt)
        self.calls: list[int] = []  # prompts per generate call

    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Sample]]:
        if self.delay_s:
            time.sleep(self.delay_s)
        self.calls.append(len(prompts))
        return [[self._answer(prompt) for _ in range(params.n)] for prompt in prompts]

    def _answer(self, prompt: str) -> Sample:
        raise NotImplementedError

    def close(self) -> None:
        pass


class SteeredGenerator(_FakeGenerator):
    name = "steered"

    def __init__(
        self,
        theorems: list[LeanDojoTheorem],
        script: Script | None = None,
        delay_s: float = 0.0,
        thoughts: bool = True,
    ) -> None:
        self.truth: dict[str, str] = {}
        for thm in theorems:
            for step in thm.steps:
                self.truth.setdefault(step.state_before, step.tactic)
        self.state_of = {
            prover_prompt(state, with_thoughts): state
            for state in self.truth
            for with_thoughts in (True, False)
        }
        super().__init__(delay_s)
        self.script, self.thoughts = script, thoughts

    def _answer(self, prompt: str) -> Sample:
        state = self.state_of.get(prompt)
        key = state if state is not None else prompt
        k = self.drawn[key]
        self.drawn[key] += 1
        truth = self.truth.get(state) if state is not None else None
        answer = self.script(state or "", k, truth) if self.script else None
        if answer is None:
            if truth is None:
                answer = GARBAGE
            else:
                answer = prover_target(truth, thought_for(state) if self.thoughts else None)
        return answer if isinstance(answer, Sample) else fake_sample(answer)


class FaultyEnv:
    """`inner`, except that tactics named in `faults` get the result given there (a value, or a
    function of the state). `delay_s` makes every call take that long."""

    def __init__(
        self,
        inner: ProofEnv,
        faults: dict[str, TacticResult | Callable[[ProofState], TacticResult]] | None = None,
        delay_s: float = 0.0,
        verdict: Verdict | None = None,
    ) -> None:
        self.inner, self.delay_s, self.verdict = inner, delay_s, verdict
        self.faults = {normalize_tactic(k): v for k, v in (faults or {}).items()}
        self.label = inner.label
        self.tactics_run: list[str] = []
        if hasattr(inner, "knows"):
            self.knows = inner.knows

    async def start(self, theorem: Theorem):
        await self._delay()
        return await self.inner.start(theorem)

    async def run_tactic(self, state: ProofState, tactic: str) -> TacticResult:
        await self._delay()
        self.tactics_run.append(tactic)
        fault = self.faults.get(normalize_tactic(tactic))
        if fault is None:
            return await self.inner.run_tactic(state, tactic)
        return fault(state) if callable(fault) else fault

    async def verify(self, theorem: Theorem, tactics: tuple[str, ...]) -> Verdict:
        await self._delay()
        if self.verdict is not None:
            return self.verdict
        return await self.inner.verify(theorem, tactics)

    async def _delay(self) -> None:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)

    async def close(self) -> None:
        await self.inner.close()


def chain_theorems(count: int, length: int) -> list[LeanDojoTheorem]:
    """`count` synthetic traced theorems, each proved by `length` tactics in a chain."""
    out = []
    for i in range(count):
        name = f"Synthetic.chain_{i}"
        states = [f"n : ℕ\nh : n > {i}\n⊢ goal {j} of chain {i}" for j in range(length)]
        states.append("no goals")
        steps = tuple(
            TracedStep(name, "Synthetic.lean", j, states[j], f"step_{j} (h := h)", states[j + 1])
            for j in range(length)
        )
        out.append(LeanDojoTheorem(name, "Synthetic.lean", "synthetic", "0" * 40, steps))
    return out


def steered_replay_node():
    """A node factory for Ray workers: the steered sampler and the replay environment on the
    bundled LeanDojo sample (a module-level function, so workers can import it)."""
    from leanstar.data import load_leandojo
    from leanstar.lean.replay import ReplayEnv

    theorems = load_leandojo("bundled:leandojo-benchmark4-sample.json")
    return SteeredGenerator(theorems), ReplayEnv(theorems)


class ScriptedGenerator(_FakeGenerator):
    """Answers the k-th sample drawn for a prompt with `script(prompt, k)` (a completion text);
    for environments whose states are not known in advance (the synthetic fake REPL)."""

    name = "scripted"

    def __init__(self, script: Callable[[str, int], str], delay_s: float = 0.0) -> None:
        super().__init__(delay_s)
        self.script = script

    def _answer(self, prompt: str) -> Sample:
        k = self.drawn[prompt]
        self.drawn[prompt] += 1
        return fake_sample(self.script(prompt, k))
