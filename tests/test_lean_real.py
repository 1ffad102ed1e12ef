"""Against a real Lean (the `lean` marker): run with `pytest -m lean` after `leanstar lean setup`.

They skip, saying why, where `leanstar lean doctor` finds no usable setup (as on the machines
that build this project). Each test starts its own pool of one or two workers; the first
import of Mathlib takes a while.
"""

import asyncio

import pytest

from leanstar.config import LeanConfig
from leanstar.data import load_theorems
from leanstar.lean.env import LeanError, ProofFinished, ProofState
from leanstar.lean.factory import make_repl_pool
from leanstar.lean.setup import inspect
from leanstar.records import Theorem

_INSTALL = inspect(LeanConfig())
pytestmark = [
    pytest.mark.lean,
    pytest.mark.skipif(not _INSTALL.usable, reason=f"needs Lean: {_INSTALL.summary()}"),
]

HEADER = (
    "import Mathlib\n\nset_option maxHeartbeats 400000\n\nopen BigOperators Real Nat Topology Rat\n"
)
ONE_LINE = Theorem("leanstar_one_line", "theorem leanstar_one_line : (2 : ℕ) + 2 = 4", HEADER)
FALSE = Theorem("leanstar_false", "theorem leanstar_false : (2 : ℕ) + 2 = 5", HEADER)


def with_pool(fn, workers=1, **overrides):
    async def main():
        cfg = LeanConfig(backend="repl", num_workers=workers, tactic_timeout_s=120, **overrides)
        pool = make_repl_pool(cfg)
        try:
            return await fn(pool)
        finally:
            await pool.close()

    return asyncio.run(main())


def test_a_one_line_theorem_is_proved_and_verified():
    async def fn(pool):
        state = await pool.start(ONE_LINE)
        done = await pool.run_tactic(state, "norm_num")
        return state, done, await pool.verify(ONE_LINE, ("norm_num",))

    state, done, verdict = with_pool(fn)
    assert isinstance(state, ProofState) and "⊢ 2 + 2 = 4" in state.goals
    assert isinstance(done, ProofFinished)
    assert verdict.ok, verdict.reason
    assert set(verdict.axioms) <= {"propext", "Classical.choice", "Quot.sound"}


def test_a_wrong_tactic_is_rejected():
    async def fn(pool):
        state = await pool.start(ONE_LINE)
        return await pool.run_tactic(state, "exact Nat.lt_irrefl 0")

    assert isinstance(with_pool(fn), LeanError)


def test_a_false_statement_cannot_be_closed():
    async def fn(pool):
        state = await pool.start(FALSE)
        return await pool.run_tactic(state, "norm_num"), await pool.verify(FALSE, ("norm_num",))

    result, verdict = with_pool(fn)
    assert not isinstance(result, ProofFinished) and not verdict.ok


@pytest.mark.parametrize(
    "tactics,reason",
    [
        (("sorry",), "uses `sorry`"),
        (("admit",), "uses `sorry`"),
        (("norm_num", "all_goals sorry"), "uses `sorry`"),
        (("native_decide",), "compiled code"),
    ],
)
def test_lean_itself_catches_what_the_screen_would(tactics, reason):
    """With the textual screen off, Lean's messages and the axioms check still refuse these
    (in normal use the screen refuses them before Lean is asked)."""
    verdict = with_pool(lambda pool: pool.verify(ONE_LINE, tactics, screen=False))
    assert not verdict.ok and reason in verdict.reason, verdict.reason


def test_exact_question_never_admits_silently():
    """`exact?` is banned by the screen; with the screen off, Lean either finds a real proof
    or the check fails, and a proof it accepts depends on no `sorryAx`."""
    verdict = with_pool(lambda pool: pool.verify(ONE_LINE, ("exact?",), screen=False))
    assert "sorryAx" not in verdict.axioms


def test_native_decide_is_accepted_and_recorded_when_allowed():
    theorem = Theorem("leanstar_native", "theorem leanstar_native : 2 ^ 10 = 1024", HEADER)
    verdict = with_pool(
        lambda pool: pool.verify(theorem, ("native_decide",)), allow_native_decide=True
    )
    assert verdict.ok and verdict.uses_native_decide


def test_bundled_minif2f_statements_elaborate():
    theorems = load_theorems("bundled:minif2f-lean4-v4.24.jsonl")[:8]

    async def fn(pool):
        return await asyncio.gather(*(pool.start(t) for t in theorems))

    states = with_pool(fn, workers=2)
    assert all(isinstance(s, ProofState) for s in states), states
