"""Search through the Lean REPL worker pool, as `make_env` builds it, against the fake REPL of
issue 3 (a separate process speaking the REPL protocol). Its `--synthetic` mode makes up states
(tactics starting `close` finish, `fail` fail); it answers no `#print axioms`, so the
whole-proof check refuses every proof: these tests are about the search surviving real process
faults, not about proofs."""

from __future__ import annotations

import json
import shlex

import pytest

from leanstar.config import LeanConfig
from leanstar.jsonl import read_records
from leanstar.records import StepOutcome, Theorem, Trajectory
from leanstar.search.bookkeeping import SearchSummary, describe
from leanstar.search.config import SearchConfig
from leanstar.search.runner import run_search
from tests import fakes
from tests.fakes.prover import ScriptedGenerator

THEOREMS = [Theorem(f"t{i}", f"theorem t{i} : True") for i in range(3)]
ROOT = "⊢ synthetic"


def block(tactic: str) -> str:
    return f"A thought.\n```lean\n{tactic}\n```"


def lean(tmp_path, *options: str, **kw) -> LeanConfig:
    argv = fakes.fake_repl_argv("--synthetic", *options)
    kw.setdefault("num_workers", 2)
    kw.setdefault("tactic_timeout_s", 5.0)
    kw.setdefault("start_timeout_s", 20.0)
    return LeanConfig(backend="repl", repl_command=shlex.join(argv), **kw)


def search(tmp_path, script, lean_cfg, **kw) -> list[Trajectory]:
    cfg = SearchConfig(run_dir=str(tmp_path / "run"), lean=lean_cfg, **kw)
    run_search(cfg, theorems=THEOREMS, generator=ScriptedGenerator(script), progress=False)
    return read_records(tmp_path / "run/trajectories.jsonl", Trajectory)


def two_steps(prompt: str, k: int) -> str:
    """From the root: a failing tactic first, then a step; from there: close."""
    if ROOT in prompt:
        return block("fail here" if k == 0 else "step one")
    return block("close it")


@pytest.mark.parametrize("strategy", ["sampling", "best_first"])
def test_search_through_the_pool(tmp_path, strategy):
    trajectories = search(
        tmp_path, two_steps, lean(tmp_path), strategy=strategy, attempts=1, candidates=2
    )
    assert len(trajectories) == 3
    for t in trajectories:
        assert t.checked_by.startswith("Lean REPL (") and "fake_repl.py" in t.checked_by
        outcomes = [s.outcome for s in t.steps]
        assert StepOutcome.PROOF_FINISHED in outcomes and t.outcome.value == "rejected"
        assert "#print axioms" in t.verdict.reason  # the fake answers no axioms query


def test_a_hanging_tactic_times_out_and_the_search_goes_on(tmp_path):
    def script(prompt, k):
        if ROOT in prompt:
            return block("hang forever" if k == 0 else "step one")
        return block("close it")

    lean_cfg = lean(
        tmp_path,
        "--fault",
        "hang",
        "--fault-on",
        "hang forever",
        tactic_timeout_s=1.0,
        num_workers=1,
    )
    (t, *_) = search(tmp_path, script, lean_cfg, attempts=1, concurrent_theorems=1)
    assert [s.outcome for s in t.steps] == [
        StepOutcome.TIMEOUT,
        StepOutcome.PROOF_STATE,
        StepOutcome.PROOF_FINISHED,
    ]
    assert "timed out" in t.steps[0].message


def test_a_crashed_worker_is_replaced(tmp_path):
    once = tmp_path / "crashed"
    lean_cfg = lean(
        tmp_path, "--fault", "crash", "--fault-on", "close it", "--fault-once", str(once)
    )
    trajectories = search(tmp_path, two_steps, lean_cfg, attempts=2)
    assert once.exists() and len(trajectories) == 6
    # the summary says what happened to the Lean processes during the run
    summary = json.loads((tmp_path / "run/summary.json").read_text())
    pool = summary["session"]["lean_pool"]
    assert pool["crashes"] == 1 and pool["restarts"] == 1 and pool["requests"] > 6
    assert "Lean processes: 1 restarts (0 timeouts, 1 crashes" in describe(SearchSummary(**summary))
    finished = [t for t in trajectories if t.steps[-1].outcome is StepOutcome.PROOF_FINISHED]
    failures = [s for t in trajectories for s in t.steps if s.outcome is StepOutcome.ENV_FAILURE]
    # the pool either retried the crashed command on a fresh worker or reported it; either way
    # every attempt ended and at most the one crashed call is an environment failure
    assert len(failures) <= 1 and len(finished) >= 5
