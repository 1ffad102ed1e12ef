"""Sampling search and best-first search against the replay environment, with a sampler steered
to the recorded proofs (tests/fakes/prover.py) and environments that inject faults."""

from __future__ import annotations

import json

import pytest

from leanstar.data import load_leandojo
from leanstar.jsonl import read_records
from leanstar.lean.env import (
    EnvFailure,
    LeanError,
    ProofState,
    Timeout,
    assemble_proof,
)
from leanstar.lean.replay import ReplayEnv
from leanstar.prompting import tactic_span
from leanstar.records import REPLAY_LABEL, StepOutcome, Theorem, Trajectory, Verdict
from leanstar.search.config import SearchConfig
from leanstar.search.context import proof_path
from leanstar.search.runner import run_search
from leanstar.search.store import ResumeConflict
from leanstar.search.theorems import load_search_theorems
from tests.fakes.prover import GARBAGE, FaultyEnv, SteeredGenerator, fake_sample, thought_for

THEOREMS = load_leandojo("bundled:leandojo-benchmark4-sample.json")
TRACED = [t for t in THEOREMS if t.steps]
CHAINS = [
    t for t in TRACED if all(a.state_after == b.state_before for a, b in zip(t.steps, t.steps[1:]))
]
TWO_STEP = next(t for t in CHAINS if len(t.steps) == 2)  # invFunIdAssoc_hom_app
S = SearchConfig


def config(tmp_path, **kw) -> SearchConfig:
    kw.setdefault("attempts", 2)
    kw.setdefault("max_steps", 8)
    return SearchConfig(run_dir=str(tmp_path / "run"), **kw)


def search(cfg, gen=None, env=None, theorems=None):
    gen = gen or SteeredGenerator(THEOREMS)
    env = env or ReplayEnv(THEOREMS)
    summary = run_search(cfg, generator=gen, env=env, theorems=theorems, progress=False)
    trajectories = read_records(f"{cfg.run_dir}/trajectories.jsonl", Trajectory)
    return summary, trajectories


def one(thm) -> list[Theorem]:
    return [thm.as_theorem()]


def outcomes(traj: Trajectory) -> list[StepOutcome]:
    return [s.outcome for s in traj.steps]


# ---------------------------------------------------------------- finding the recorded proofs


@pytest.mark.parametrize("strategy", ["sampling", "best_first"])
def test_steered_search_finds_every_recorded_chain_proof(tmp_path, strategy):
    cfg = config(tmp_path, strategy=strategy, candidates=4)
    summary, trajectories = search(cfg)
    by_key = {(t.theorem, t.attempt): t for t in trajectories}
    assert len(by_key) == len(trajectories) == len(TRACED) * 2  # untraced ones are skipped
    for thm in CHAINS:
        tactics = [s.tactic for s in thm.steps]
        for attempt in range(2):
            t = by_key[thm.full_name, attempt]
            assert t.proved and t.verdict.ok and t.checked_by == REPLAY_LABEL
            assert t.strategy == strategy and t.proof == assemble_proof(tactics)
            path = proof_path(t)
            assert [s.tactic for s in path] == tactics
            assert [s.thought for s in path] == [thought_for(s.state_before) for s in thm.steps]
            assert [s.state for s in path] == [s.state_before for s in thm.steps]
            assert path[-1].outcome is StepOutcome.PROOF_FINISHED
    assert summary.complete and summary.checked_by == REPLAY_LABEL
    assert summary.theorems == len(TRACED) and len(summary.skipped) == len(THEOREMS) - len(TRACED)
    assert summary.theorems_proved == sum(
        any(t.proved for t in trajectories if t.theorem == n) for n in {t.full_name for t in TRACED}
    )
    assert summary.theorems_proved >= len(CHAINS)
    lines = (tmp_path / "run/theorems.jsonl").read_text().splitlines()
    listed = [json.loads(line)["name"] for line in lines]
    assert listed == [t.full_name for t in TRACED]
    saved = json.loads((tmp_path / "run/summary.json").read_text())
    assert saved["outcomes"] == summary.outcomes and saved["session"]["attempts"] == 2 * len(TRACED)


def test_sampling_step_records_carry_timings_and_scores(tmp_path):
    _, trajectories = search(config(tmp_path, attempts=1), theorems=one(TWO_STEP))
    (t,) = trajectories
    assert t.elapsed_s >= 0 and t.model == "runs/tiny-model" and t.round == 0
    for step in t.steps:
        assert step.logprob is not None and step.logprob < 0
        assert step.sample_s >= 0 and step.lean_s >= 0
    # score "tactic": only the tactic's tokens count (fake tokens are words of -0.1 each)
    assert t.steps[0].logprob == pytest.approx(-0.1 * len(TWO_STEP.steps[0].tactic.split()))


def test_thought_tactic_score_counts_the_thought(tmp_path):
    _, (t,) = search(config(tmp_path, attempts=1, score="thought_tactic"), theorems=one(TWO_STEP))
    tactic_words = len(TWO_STEP.steps[0].tactic.split())
    assert t.steps[0].logprob < -0.1 * (tactic_words + 3)


def test_tactic_span_covers_only_the_tactic():
    text = "Think.\n```lean\n  simp [h]\n\n```\nafter"
    start, end = tactic_span(text)
    assert text[start:end] == "simp [h]"
    cut = "```lean\nomega"  # cut off before the closing fence
    assert cut[slice(*tactic_span(cut))] == "omega"
    assert tactic_span("no block here") is None


# ---------------------------------------------------------------- faults, sampling search


def test_sampling_records_each_failure_in_place_and_resamples(tmp_path):
    root = TWO_STEP.steps[0].state_before
    script_answers = [
        GARBAGE,  # no tactic block
        "```lean\nnot_recorded\n```",  # the replay env holds no such tactic
        "```lean\nlean_rejects\n```",
        "```lean\nslow_tactic\n```",
        "```lean\nno_op\n```",  # reaches the same state
    ]

    def script(state, k, truth):
        return script_answers[k] if state == root and k < len(script_answers) else None

    env = FaultyEnv(
        ReplayEnv(THEOREMS),
        {
            "lean_rejects": LeanError("unknown tactic"),
            "slow_tactic": Timeout(60.0),
            "no_op": lambda state: ProofState(
                state.theorem, state.goals, (*state.tactics, "no_op")
            ),
        },
    )
    cfg = config(tmp_path, attempts=1)
    _, (t,) = search(cfg, SteeredGenerator(THEOREMS, script), env, one(TWO_STEP))
    assert outcomes(t) == [
        StepOutcome.UNPARSABLE,
        StepOutcome.UNKNOWN_TO_REPLAY,
        StepOutcome.LEAN_ERROR,
        StepOutcome.TIMEOUT,
        StepOutcome.DUPLICATE,
        StepOutcome.PROOF_STATE,
        StepOutcome.PROOF_FINISHED,
    ]
    assert [s.depth for s in t.steps] == [0, 0, 0, 0, 0, 0, 1]
    assert t.proved and [s.tactic for s in proof_path(t)] == [s.tactic for s in TWO_STEP.steps]
    messages = [s.message for s in t.steps[:5]]
    assert messages[0] == "no ```lean block" and "not in the replay recording" in messages[1]
    assert messages[2] == "unknown tactic" and "timed out" in messages[3]
    assert "already on this proof path" in messages[4]
    assert t.steps[0].tactic is None and t.steps[0].thought == GARBAGE


def test_sampling_gives_up_after_max_resamples(tmp_path):
    gen = SteeredGenerator(THEOREMS, lambda state, k, truth: GARBAGE)
    cfg = config(tmp_path, attempts=1, max_resamples=2)
    _, (t,) = search(cfg, gen, theorems=one(TWO_STEP))
    assert t.outcome.value == "failed" and t.stop_reason == "3 failed samples at step 1"
    assert outcomes(t) == [StepOutcome.UNPARSABLE] * 3


def test_sampling_stops_at_max_steps(tmp_path):
    _, (t,) = search(config(tmp_path, attempts=1, max_steps=1), theorems=one(TWO_STEP))
    assert t.outcome.value == "failed" and t.stop_reason == "1 steps without closing the goals"
    assert outcomes(t) == [StepOutcome.PROOF_STATE]


def test_environment_failure_makes_the_attempt_an_error(tmp_path):
    env = FaultyEnv(ReplayEnv(THEOREMS), {TWO_STEP.steps[0].tactic: EnvFailure("REPL crashed")})
    _, (t,) = search(config(tmp_path, attempts=1, max_resamples=1), env=env, theorems=one(TWO_STEP))
    assert t.outcome.value == "error"
    assert t.stop_reason == "2 failed samples at step 1; 2 environment failures"
    assert outcomes(t) == [StepOutcome.ENV_FAILURE] * 2


def test_whole_proof_check_decides(tmp_path):
    refusal = Verdict(False, "declaration uses 'sorry'", REPLAY_LABEL)
    env = FaultyEnv(ReplayEnv(THEOREMS), verdict=refusal)
    for strategy in ("sampling", "best_first"):
        cfg = config(tmp_path / strategy, attempts=1, strategy=strategy)
        summary, (t,) = search(cfg, env=env, theorems=one(TWO_STEP))
        assert t.outcome.value == "rejected" and t.verdict == refusal
        assert "whole-proof check refused" in t.stop_reason and "sorry" in t.stop_reason
        assert t.proof == assemble_proof([s.tactic for s in TWO_STEP.steps])
        assert summary.theorems_proved == 0


def test_time_budget_ends_attempts(tmp_path):
    for strategy in ("sampling", "best_first"):
        cfg = config(tmp_path / strategy, strategy=strategy, theorem_time_s=0.0)
        _, trajectories = search(cfg, theorems=one(TWO_STEP))
        assert all("time budget" in t.stop_reason and not t.steps for t in trajectories)


def test_theorem_that_cannot_start_is_an_error_for_each_attempt(tmp_path):
    ghost = Theorem(name="Not.recorded", statement="")
    _, trajectories = search(config(tmp_path), theorems=[TWO_STEP.as_theorem(), ghost])
    ghosts = [t for t in trajectories if t.theorem == "Not.recorded"]
    # the replay env says which theorems it holds, so the runner skips the ghost up front
    assert ghosts == []
    env = FaultyEnv(ReplayEnv(THEOREMS))
    del env.knows  # an environment that cannot tell in advance
    _, trajectories = search(config(tmp_path / "b"), env=env, theorems=[ghost])
    assert [t.outcome.value for t in trajectories] == ["error", "error"]
    assert all(t.stop_reason.startswith("could not start the theorem") for t in trajectories)


# ---------------------------------------------------------------- best-first specifics


def test_best_first_expands_by_score_and_deduplicates(tmp_path):
    root, middle = TWO_STEP.steps[0].state_before, TWO_STEP.steps[1].state_before
    truth0 = f"```lean\n{TWO_STEP.steps[0].tactic}\n```"
    truth1 = f"```lean\n{TWO_STEP.steps[1].tactic}\n```"

    def script(state, k, truth):
        if state == root:  # the detour scores best, so it is expanded first
            return [
                fake_sample(truth0, -0.2),
                fake_sample("```lean\ndetour\n```", -0.01),
                fake_sample(truth0, -0.2),  # the same tactic again: not rerun
                GARBAGE,
            ][k % 4]
        if state == middle:
            return [truth1, "```lean\nback\n```"][k % 2]
        return GARBAGE

    env = FaultyEnv(
        ReplayEnv(THEOREMS),
        {
            "detour": lambda s: ProofState(s.theorem, "⊢ detour", (*s.tactics, "detour")),
            "back": lambda s: ProofState(s.theorem, root, (*s.tactics, "back")),
        },
    )
    cfg = config(tmp_path, attempts=1, strategy="best_first", candidates=4)
    _, (t,) = search(cfg, SteeredGenerator(THEOREMS, script), env, one(TWO_STEP))
    assert t.proved
    expanded = list(dict.fromkeys(s.state for s in t.steps))
    assert expanded == [root, "⊢ detour", middle]
    dups = [s.message for s in t.steps if s.outcome is StepOutcome.DUPLICATE]
    assert any("same tactic as an earlier candidate" in m for m in dups)
    assert any("already holds" in m for m in dups)
    assert env.tactics_run.count(TWO_STEP.steps[0].tactic) == 1
    assert [s.tactic for s in proof_path(t)] == [s.tactic for s in TWO_STEP.steps]
    assert t.steps[-1].outcome is StepOutcome.PROOF_FINISHED


def test_best_first_budgets(tmp_path):
    cfg = config(tmp_path / "a", attempts=1, strategy="best_first", max_expansions=1)
    _, (t,) = search(cfg, theorems=one(TWO_STEP))
    assert t.outcome.value == "failed" and t.stop_reason == "1 expansions without a proof"
    cfg = config(tmp_path / "b", attempts=1, strategy="best_first", max_steps=1)
    _, (t,) = search(cfg, theorems=one(TWO_STEP))
    assert t.outcome.value == "failed" and t.stop_reason == "no open state left"


# ---------------------------------------------------------------- resume


def test_resume_adds_only_missing_attempts(tmp_path):
    cfg = config(tmp_path, attempts=1)
    first, _ = search(cfg)
    assert first.session["attempts"] == len(TRACED)
    again, trajectories = search(cfg)
    assert again.session["attempts"] == 0 and len(trajectories) == len(TRACED)
    cfg.attempts = 3
    more, trajectories = search(cfg)
    assert more.session["attempts"] == 2 * len(TRACED)
    keys = [(t.theorem, t.attempt) for t in trajectories]
    assert len(keys) == len(set(keys)) == 3 * len(TRACED) and more.complete


def test_resume_refuses_other_settings_or_checker(tmp_path):
    cfg = config(tmp_path, attempts=1)
    search(cfg, theorems=one(TWO_STEP))
    cfg.strategy = "best_first"
    with pytest.raises(ResumeConflict, match="strategy: 'sampling' -> 'best_first'"):
        search(cfg, theorems=one(TWO_STEP))
    cfg.strategy = "sampling"
    env = FaultyEnv(ReplayEnv(THEOREMS))
    env.label = "Lean REPL v4.24.0"
    with pytest.raises(ResumeConflict, match="never mixed"):
        search(cfg, env=env, theorems=one(TWO_STEP))


def test_generator_error_stops_the_run_and_keeps_what_was_written(tmp_path):
    class Flaky(SteeredGenerator):
        def generate(self, prompts, params):
            if len(self.calls) >= 3:
                raise ConnectionError("sampler server went away")
            return super().generate(prompts, params)

    cfg = config(tmp_path, attempts=1, concurrent_theorems=1)
    with pytest.raises(ConnectionError, match="went away"):
        search(cfg, Flaky(THEOREMS))
    kept = read_records(tmp_path / "run/trajectories.jsonl", Trajectory)
    assert 0 < len(kept) < len(TRACED)
    summary, trajectories = search(cfg)  # resumes
    assert summary.complete and len(trajectories) == len(TRACED)


# ---------------------------------------------------------------- theorem sources


def test_theorem_sources(tmp_path):
    dojo = load_search_theorems(S(theorems="bundled:leandojo-benchmark4-sample.json", limit=5))
    assert [t.name for t in dojo] == [t.full_name for t in THEOREMS[:5]]
    assert all(t.statement == "" for t in dojo)
    mini = load_search_theorems(S(theorems="bundled:minif2f-lean4-v4.24.jsonl", split="test"))
    assert len(mini) == 244 and all(t.statement.startswith("theorem") for t in mini)
    with pytest.raises(ValueError, match="no theorems with split 'nope'"):
        load_search_theorems(S(theorems="bundled:minif2f-lean4-v4.24.jsonl", split="nope"))
    path = tmp_path / "dup.jsonl"
    row = {"name": "t", "formal_statement": "theorem t : True := by sorry"}
    path.write_text(json.dumps(row) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(ValueError, match="'t' occurs twice"):
        load_search_theorems(S(theorems=str(path)))


# ---------------------------------------------------------------- a session across rounds


class LoopBoundEnv(FaultyEnv):
    """Like an environment whose Lean processes belong to the event loop that started them."""

    loop = None

    async def start(self, theorem):
        import asyncio

        running = asyncio.get_running_loop()
        assert self.loop in (None, running), "env used from a second event loop"
        self.loop = running
        return await super().start(theorem)


def test_session_keeps_sampler_env_and_loop_across_rounds(tmp_path):
    from leanstar.search.runner import SearchSession

    env, gen = LoopBoundEnv(ReplayEnv(THEOREMS)), SteeredGenerator(THEOREMS)
    with SearchSession(generator=gen, env=env) as session:
        for k in (1, 2):
            cfg = SearchConfig(run_dir=str(tmp_path / f"round-{k}"), attempts=1)
            summary = session.run(cfg, theorems=one(TWO_STEP), round=k, progress=False)
            (t,) = read_records(tmp_path / f"round-{k}/trajectories.jsonl", Trajectory)
            assert summary.complete and t.proved and t.round == k
    assert env.loop is not None and len(gen.calls) == 4


def test_unusable_settings_are_refused(tmp_path):
    cfg = config(tmp_path, attempts=0, candidates=0)
    with pytest.raises(ValueError, match=r"attempts must be >= 1 \(got 0\); candidates must be"):
        search(cfg)
