import asyncio

import pytest

from leanstar.data import load_leandojo
from leanstar.lean.env import (
    ProofFinished,
    ProofState,
    UnknownToReplay,
    assemble_proof,
    message_of,
    outcome_of,
)
from leanstar.lean.replay import ReplayEnv
from leanstar.records import REPLAY_LABEL, StepOutcome

THEOREMS = load_leandojo("bundled:leandojo-benchmark4-sample.json")
CHAIN = "CategoryTheory.Equivalence.invFunIdAssoc_hom_app"


def run(coro):
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def env():
    return ReplayEnv(THEOREMS)


def _thm(name):
    return next(t for t in THEOREMS if t.full_name == name)


def test_recorded_chain_reaches_no_goals(env):
    thm = _thm(CHAIN)
    state = run(env.start(thm.as_theorem()))
    assert isinstance(state, ProofState) and state.goals == thm.steps[0].state_before
    state2 = run(env.run_tactic(state, "dsimp  [invFunIdAssoc]\n"))  # whitespace normalised
    assert isinstance(state2, ProofState)
    assert state2.goals == thm.steps[0].state_after
    assert state2.tactics == ("dsimp  [invFunIdAssoc]\n",)
    done = run(env.run_tactic(state2, "aesop_cat"))
    assert isinstance(done, ProofFinished)
    assert outcome_of(done) is StepOutcome.PROOF_FINISHED
    assert state == run(env.start(thm.as_theorem()))  # states are values; starting is repeatable


def test_unrecorded_tactic_is_unknown_not_error(env):
    state = run(env.start(_thm(CHAIN).as_theorem()))
    result = run(env.run_tactic(state, "simp"))
    assert isinstance(result, UnknownToReplay)
    assert outcome_of(result) is StepOutcome.UNKNOWN_TO_REPLAY
    assert "not in the replay recording" in message_of(result)


def test_unknown_theorem(env):
    untraced = next(t for t in THEOREMS if not t.steps)
    assert isinstance(run(env.start(untraced.as_theorem())), UnknownToReplay)


def test_verify_is_labelled_replay(env):
    thm = _thm(CHAIN).as_theorem()
    ok = run(env.verify(thm, ("dsimp [invFunIdAssoc]", "aesop_cat")))
    assert ok.ok and ok.checked_by == REPLAY_LABEL and "not checked by Lean" in ok.reason
    assert not run(env.verify(thm, ("dsimp [invFunIdAssoc]",))).ok
    assert not run(env.verify(thm, ("aesop_cat",))).ok
    assert not run(env.verify(thm, ("dsimp [invFunIdAssoc]", "aesop_cat", "rfl"))).ok


def test_every_chain_theorem_replays_to_the_end(env):
    chains = [
        t
        for t in THEOREMS
        if t.steps and all(a.state_after == b.state_before for a, b in zip(t.steps, t.steps[1:]))
    ]
    assert len(chains) == 12
    for thm in chains:
        verdict = run(env.verify(thm.as_theorem(), tuple(s.tactic for s in thm.steps)))
        assert verdict.ok, thm.full_name


def test_assemble_proof_indents_multiline_tactics():
    assert assemble_proof(["intro x", "constructor\n· simp\n· ring"]) == (
        "  intro x\n  constructor\n  · simp\n  · ring"
    )
