"""The LeanDojo backend driven through a stand-in for `lean_dojo.Dojo` that answers with
LeanDojo's own result types and exceptions, from real traced states (the bundled Benchmark 4
sample): the mapping onto our results must be exact."""

import asyncio
import subprocess
import sys

import lean_dojo
import pytest

from leanstar.config import LeanConfig
from leanstar.data import load_leandojo
from leanstar.lean.dojo import DojoEnv
from leanstar.lean.env import EnvFailure, LeanError, ProofFinished, ProofState, Timeout
from leanstar.records import Theorem

THEOREMS = {t.full_name: t for t in load_leandojo("bundled:leandojo-benchmark4-sample.json")}
RPOW = THEOREMS["ENNReal.le_rpow_one_div_iff"]
PROOF = tuple(step.tactic for step in RPOW.steps[:3])
URL, COMMIT = RPOW.url, RPOW.commit


class StandInDojo:
    """Behaves like `lean_dojo.Dojo` for one theorem: `__enter__` gives the recorded first
    state, `run_tac` the recorded state after a recorded tactic, and scripted faults."""

    def __init__(self, recorded, log, faults):
        self.recorded, self.log, self.faults = recorded, log, faults
        self.next_id = 1

    def __enter__(self):
        self.log.append("enter")
        if self.faults.get("init"):
            raise lean_dojo.DojoInitError(self.faults["init"])
        return self, lean_dojo.TacticState(self.recorded.steps[0].state_before, 0)

    def __exit__(self, *exc):
        self.log.append("exit")

    def run_tac(self, state, tactic):
        assert isinstance(state, lean_dojo.TacticState)
        self.log.append(tactic)
        fault = self.faults.get(tactic)
        if fault == "crash-once":
            del self.faults[tactic]  # the faults are shared by every session: once in all
        if fault in ("crash", "crash-once"):
            raise lean_dojo.DojoCrashError("OOM")
        if fault == "timeout":
            raise lean_dojo.DojoTacticTimeoutError()
        if fault == "give-up":
            return lean_dojo.ProofGivenUp()
        for step in self.recorded.steps:
            if step.state_before == state.pp and step.tactic == tactic:
                self.next_id += 1
                if step.state_after == "no goals":
                    return lean_dojo.ProofFinished(self.next_id, "")
                return lean_dojo.TacticState(step.state_after, self.next_id)
        return lean_dojo.LeanError(f"unknown tactic {tactic!r} (stand-in)")


def make_env(faults=None, max_sessions=2):
    calls, log = [], []
    faults = dict(faults or {})

    def factory(theorem, repo, commit, file_path, timeout):
        calls.append((theorem.name, repo, commit, file_path, timeout))
        return StandInDojo(THEOREMS[theorem.name], log, faults)

    cfg = LeanConfig(backend="dojo", num_workers=max_sessions, tactic_timeout_s=30)
    return DojoEnv.from_config(cfg, dojo_factory=factory), calls, log


def run(coro):
    return asyncio.run(coro)


def theorem_of(recorded):
    return recorded.as_theorem()


async def walk(env, path=PROOF):
    state = await env.start(theorem_of(RPOW))
    seen = [state]
    for tactic in path:
        state = await env.run_tactic(state, tactic)
        seen.append(state)
    return seen


def test_results_map_exactly_onto_ours():
    env, calls, _ = make_env()
    seen = run(walk(env))
    run(env.close())
    steps = RPOW.steps
    assert [s.goals for s in seen[:3]] == [
        steps[0].state_before,
        *(s.state_after for s in steps[:2]),
    ]
    assert seen[1].tactics == PROOF[:1] and seen[2].tactics == PROOF[:2]
    assert seen[3] == ProofFinished(RPOW.full_name, PROOF, ())
    # repository, commit and file come from the LeanDojo record's source (which keeps the
    # commit's first 8 hex digits; lean.dojo_commit gives the full one)
    assert calls == [(RPOW.full_name, URL, COMMIT, RPOW.file_path, 30)]


def test_lean_error_and_given_up():
    env, _, _ = make_env({"admit_it": "give-up"})

    async def main():
        start = await env.start(theorem_of(RPOW))
        wrong = await env.run_tactic(start, "simp")
        gave_up = await env.run_tactic(start, "admit_it")
        screened = await env.run_tactic(start, "sorry")
        await env.close()
        return wrong, gave_up, screened

    wrong, gave_up, screened = run(main())
    assert wrong == LeanError("unknown tactic 'simp' (stand-in)")
    assert gave_up == LeanError("LeanDojo gave up: the proof contains `sorry`")
    assert isinstance(screened, LeanError) and screened.message.startswith("not sent to Lean")


def test_timeout_discards_the_session_and_the_state_is_rebuilt():
    env, _, log = make_env({"slow": "timeout"})

    async def main():
        start = await env.start(theorem_of(RPOW))
        first = await env.run_tactic(start, PROOF[0])
        slow = await env.run_tactic(first, "slow")
        second = await env.run_tactic(first, PROOF[1])  # its session is gone: replayed
        await env.close()
        return slow, second

    slow, second = run(main())
    assert slow == Timeout(30.0)
    assert isinstance(second, ProofState) and second.goals == RPOW.steps[1].state_after
    assert log.count("enter") == 2 and log[log.index("slow") + 1] == "exit"


def test_a_crash_is_retried_once_on_a_fresh_session():
    env, _, log = make_env({PROOF[1]: "crash-once"})
    seen = run(walk(env))
    run(env.close())
    assert seen[-1] == ProofFinished(RPOW.full_name, PROOF, ())
    assert log.count("enter") == 2  # the fresh session replayed PROOF[0] before retrying


def test_a_tactic_that_always_crashes_is_an_env_failure():
    env, _, _ = make_env({PROOF[1]: "crash"})
    seen = run(walk(env, PROOF[:2]))
    run(env.close())
    assert isinstance(seen[-1], EnvFailure) and "out of memory (exit 137)" in seen[-1].message


def test_start_failures():
    env, _, _ = make_env({"init": "cannot find the traced file"})
    result = run(env.start(theorem_of(RPOW)))
    assert isinstance(result, EnvFailure) and "cannot find the traced file" in result.message
    env, _, _ = make_env()
    bare = Theorem("x", "theorem x : True")  # no LeanDojo source, no config
    result = run(env.start(bare))
    assert isinstance(result, EnvFailure) and "lean.dojo_repo" in result.message


def test_sessions_are_shared_per_theorem_and_evicted_least_recent_first():
    env, calls, log = make_env(max_sessions=1)
    other = THEOREMS["NNReal.le_inv_iff_mul_le"]

    async def main():
        a1 = await env.start(theorem_of(RPOW))
        a2 = await env.start(theorem_of(RPOW))  # same session, same initial state
        b = await env.start(theorem_of(other))  # evicts RPOW's session
        a_next = await env.run_tactic(a1, PROOF[0])  # rebuilt in a new session
        b_done = await env.run_tactic(b, other.steps[0].tactic)
        await env.close()
        return a1, a2, a_next, b_done

    a1, a2, a_next, b_done = run(main())
    assert a1 == a2 and isinstance(a_next, ProofState)
    assert isinstance(b_done, ProofFinished)
    assert [c[0] for c in calls].count(RPOW.full_name) == 2


def test_verify():
    env, _, log = make_env()
    ok = run(env.verify(theorem_of(RPOW), PROOF))
    assert ok.ok and ok.checked_by == "LeanDojo" and "axioms not listed" in ok.reason
    early = run(env.verify(theorem_of(RPOW), (*PROOF, "simp")))
    assert not early.ok and "closed at tactic 3 of 4" in early.reason
    short = run(env.verify(theorem_of(RPOW), PROOF[:2]))
    assert not short.ok and "goals remain" in short.reason
    wrong = run(env.verify(theorem_of(RPOW), ("simp",)))
    assert not wrong.ok and "unknown tactic" in wrong.reason
    cheat = run(env.verify(theorem_of(RPOW), (*PROOF[:2], "sorry")))
    assert not cheat.ok and cheat.reason.startswith("soundness screen:")
    assert log.count("enter") == log.count("exit")  # every verification closes its session
    run(env.close())


def test_lean_dojo_is_imported_only_by_its_backend():
    code = (
        "import sys, leanstar.lean.factory, leanstar.lean.pool, leanstar.lean.replay;"
        "print('lean_dojo' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("cls", ["TacticState", "ProofFinished", "LeanError", "ProofGivenUp"])
def test_the_stand_in_uses_lean_dojos_own_types(cls):
    assert hasattr(lean_dojo, cls)
