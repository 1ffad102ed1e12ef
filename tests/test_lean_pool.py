"""The REPL worker pool against the fake REPL: real transcripts through the pool, branching,
headers, and the faults (hang, crash, garbage, lost states, memory growth, recycling, Ctrl-C)."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter

import psutil
import pytest
from fakes import V433, fake_repl_argv

from leanstar.lean.env import EnvFailure, LeanError, ProofFinished, ProofState, Timeout
from leanstar.lean.pool import Launch, PoolOptions, ReplPool, split_header
from leanstar.records import Theorem

COMPLEX_AND = Theorem(
    "complex_and", "theorem complex_and (p q r : Prop) (h1 : p ∧ q) (h2 : q → r) : p ∧ r"
)
PATH = ("apply And.intro", "exact h1.left", "apply h2", "exact h1.right")
HYPS = "p q r : Prop\nh1 : p ∧ q\nh2 : q → r\n"
GOALS = (
    f"{HYPS}⊢ p ∧ r",
    f"case left\n{HYPS}⊢ p\n\ncase right\n{HYPS}⊢ r",
    f"case right\n{HYPS}⊢ r",
    f"case right\n{HYPS}⊢ q",
)
DEF_F = Theorem("f", "def f : Nat")  # proof_step.in: two branches from the initial state


def make_pool(*fake_options, workers=2, transcripts=(V433,), **options) -> ReplPool:
    options.setdefault("tactic_timeout_s", 10.0)
    options.setdefault("start_timeout_s", 20.0)
    launch = Launch(fake_repl_argv(*fake_options, transcripts=transcripts))
    return ReplPool(launch, PoolOptions(num_workers=workers, **options), label="fake REPL")


async def walk(pool, theorem=COMPLEX_AND, path=PATH):
    """Run `path` from the theorem's start; every intermediate result, then the last."""
    state = await pool.start(theorem)
    seen = [state]
    for tactic in path:
        assert isinstance(state, ProofState), seen
        state = await pool.run_tactic(state, tactic)
        seen.append(state)
    return seen


def run(coro):
    return asyncio.run(coro)


def check_complex_and(seen):
    assert [s.goals for s in seen[:-1]] == list(GOALS)
    assert [s.tactics for s in seen[:-1]] == [PATH[:i] for i in range(4)]
    assert seen[-1] == ProofFinished("complex_and", PATH)


def test_a_recorded_proof_goes_through_the_pool():
    async def main():
        pool = make_pool()
        try:
            return await walk(pool), pool.stats.copy()
        finally:
            await pool.close()

    seen, stats = run(main())
    check_complex_and(seen)
    assert stats["requests"] == 5 and stats["restarts"] == 0


def test_states_branch_and_backtrack():
    async def main():
        pool = make_pool(workers=1)
        try:
            start = await pool.start(DEF_F)
            int_branch = await pool.run_tactic(start, "apply Int.natAbs")
            have = await pool.run_tactic(start, "have t : Nat := 42")  # back to the start
            done = await pool.run_tactic(have, "exact t")
            again = await pool.run_tactic(start, "have t : Nat := 42")  # a state is reusable
            return start, int_branch, have, done, again
        finally:
            await pool.close()

    start, int_branch, have, done, again = run(main())
    assert start.goals == "⊢ Nat" and int_branch.goals == "⊢ Int"
    assert have.goals == "t : Nat\n⊢ Nat" and have.tactics == ("have t : Nat := 42",)
    assert done == ProofFinished("f", ("have t : Nat := 42", "exact t"))
    assert again == have  # equal as values; handles differ and are not compared


def test_lean_errors_and_the_screen():
    invalid = Theorem("my_theorem", "theorem my_theorem (x : Nat) : x = x")
    exat = Theorem("f", "def f : Nat")

    async def main():
        pool = make_pool(workers=1)
        try:
            state = await pool.start(invalid)
            wrong = await pool.run_tactic(state, "exact my_fake_premise")
            unknown = await pool.run_tactic(await pool.start(exat), "exat 42")
            before = pool.stats["requests"]
            screened = await pool.run_tactic(state, "sorry")
            return wrong, unknown, screened, pool.stats["requests"] - before
        finally:
            await pool.close()

    wrong, unknown, screened, sent = run(main())
    assert isinstance(wrong, LeanError) and "my_fake_premise" in wrong.message
    assert unknown == LeanError("<input>:1:1: unknown tactic")
    assert isinstance(screened, LeanError) and screened.message.startswith("not sent to Lean")
    assert sent == 0


def test_header_is_imported_once_per_worker_and_reused():
    foo = Theorem("foo", "theorem foo (x : Nat) : x = x", header="import Mathlib")

    async def main():
        pool = make_pool(workers=1)
        try:
            first = await walk(pool, foo, ("induction x", "next => rfl"))
            second = await pool.start(foo)
            return first, second, pool.stats["requests"]
        finally:
            await pool.close()

    first, second, requests = run(main())
    assert first[1].goals.startswith("case zero\n⊢ 0 = 0\n\ncase succ")
    assert first[2].goals.startswith("case succ")
    assert isinstance(second, ProofState)
    assert requests == 1 + 1 + 2 + 1  # import once, statement, two tactics, statement again


def test_split_header():
    minif2f = "import Mathlib\n\nset_option maxHeartbeats 0\n\nopen BigOperators Real\n\n"
    assert split_header(minif2f) == (
        "import Mathlib",
        "set_option maxHeartbeats 0\n\nopen BigOperators Real",
    )
    assert split_header("import Mathlib\nimport Aesop") == ("import Mathlib\nimport Aesop", "")
    assert split_header("open Nat") == ("", "open Nat") and split_header("  ") == ("", "")


def test_headers_that_share_imports_share_the_import():
    nat = Theorem("a", "theorem a : True", header="import Mathlib\n\nopen Nat\n")
    real = Theorem("b", "theorem b : True", header="import Mathlib\nopen Real")

    async def main():
        pool = make_pool("--synthetic", workers=1, transcripts=())
        try:
            for theorem in (nat, real, nat):
                assert isinstance(await pool.start(theorem), ProofState)
            return pool.stats["requests"]
        finally:
            await pool.close()

    # import Mathlib, open Nat, a, open Real, b, a again
    assert run(main()) == 6


def test_default_header_is_warmed_at_boot():
    foo = Theorem("foo", "theorem foo (x : Nat) : x = x")  # brings no header

    async def main():
        pool = make_pool(workers=1, default_header="import Mathlib")
        try:
            return await pool.start(foo), pool.stats.copy()
        finally:
            await pool.close()

    state, stats = run(main())
    assert isinstance(state, ProofState)
    assert stats["boot_requests"] == 1 and stats["requests"] == 1  # imported while booting


def test_a_header_lean_refuses_fails_fast_and_is_not_resent():
    broken = Theorem("foo", "theorem foo (x : Nat) : x = x", header="import NoSuchModule")

    async def main():
        pool = make_pool(workers=1)
        try:
            return await pool.start(broken), await pool.start(broken), pool.stats.copy()
        finally:
            await pool.close()

    first, second, stats = run(main())
    assert isinstance(first, EnvFailure) and "header does not elaborate" in first.message
    assert second == first and stats["requests"] == 1


def test_theorem_without_statement_text():
    async def main():
        pool = make_pool(workers=1)
        try:
            return await pool.start(Theorem("x", ""))
        finally:
            await pool.close()

    result = run(main())
    assert isinstance(result, EnvFailure) and "no statement text" in result.message


# ---------------------------------------------------------------- faults


def test_a_crash_mid_proof_is_retried_on_a_rebuilt_state(tmp_path):
    once = str(tmp_path / "fired")

    async def main():
        pool = make_pool("--fault", "crash", "--fault-on", "h1.left", "--fault-once", once)
        try:
            return await walk(pool), pool.stats.copy()
        finally:
            await pool.close()

    seen, stats = run(main())
    check_complex_and(seen)  # same answers as without the crash
    assert stats["crashes"] == 1 and stats["rebuilds"] == 1 and stats["restarts"] == 1


def test_garbage_output_is_handled_like_a_crash(tmp_path):
    once = str(tmp_path / "fired")

    async def main():
        pool = make_pool("--fault", "garbage", "--fault-on", "apply h2", "--fault-once", once)
        try:
            return await walk(pool), pool.stats.copy()
        finally:
            await pool.close()

    seen, stats = run(main())
    check_complex_and(seen)
    assert stats["crashes"] == 1 and stats["rebuilds"] == 1


def test_a_forgetful_process_is_replaced(tmp_path):
    once = str(tmp_path / "fired")

    async def main():
        pool = make_pool("--fault", "forget", "--fault-on", "apply h2", "--fault-once", once)
        try:
            return await walk(pool), pool.stats.copy()
        finally:
            await pool.close()

    seen, stats = run(main())
    check_complex_and(seen)
    assert stats["restarts"] == 1 and stats["rebuilds"] == 1


def test_a_tactic_that_always_crashes_ends_in_env_failure():
    async def main():
        pool = make_pool("--fault", "crash", "--fault-on", "apply h2")
        try:
            return await walk(pool, path=PATH[:3]), pool.stats.copy()
        finally:
            await pool.close()

    seen, stats = run(main())
    assert isinstance(seen[-1], EnvFailure) and "failed 2 times" in seen[-1].message
    assert stats["crashes"] == 2


def test_a_hung_worker_times_out_and_queued_requests_move_on(tmp_path):
    """Two requests on one worker's state; the first hangs. It gets Timeout; the second is
    rebuilt on the other worker and answered while the hung worker's replacement is still
    booting (the replacement is told to take 30 s)."""
    once = str(tmp_path / "fired")

    async def main():
        pool = make_pool(
            "--fault", "hang", "--fault-on", "Int.natAbs", "--fault-once", once,
            "--restart-delay", "30", tactic_timeout_s=1.0,
        )  # fmt: skip
        try:
            start = await pool.start(DEF_F)
            hung = asyncio.create_task(pool.run_tactic(start, "apply Int.natAbs"))
            await asyncio.sleep(0.1)
            queued = await pool.run_tactic(start, "have t : Nat := 42")
            ready_when_answered = pool.ready_workers()
            return await hung, queued, ready_when_answered, pool.stats.copy()
        finally:
            await pool.close()

    hung, queued, ready, stats = run(main())
    assert hung == Timeout(1.0)
    assert isinstance(queued, ProofState) and queued.goals == "t : Nat\n⊢ Nat"
    assert ready == 1  # the replacement had not booted when the queued request was answered
    assert stats["timeouts"] == 1 and stats["rebuilds"] == 1


def test_workers_are_recycled_after_n_commands():
    async def main():
        pool = make_pool(workers=2, max_commands_per_worker=3)
        try:
            return await walk(pool), pool.stats.copy()
        finally:
            await pool.close()

    seen, stats = run(main())
    check_complex_and(seen)
    assert stats["recycled_commands"] >= 1 and stats["rebuilds"] >= 1


def test_recycling_many_live_states_does_not_storm():
    """24 live attempts on one worker with a 30-command budget: rebuilding the states a recycle
    drops takes more than the budget, so the replays alone used to trigger the next recycle,
    again and again, until requests failed ("kept restarting"). The budget now stretches to
    REPLAY_SHARE_LIMIT x the replays, so every attempt goes through after a few recycles."""

    async def attempt(pool, i):
        state = await pool.start(Theorem(f"t{i}", f"theorem t{i} : True"))
        for k in range(8):
            state = await pool.run_tactic(state, f"step {k}")
            assert isinstance(state, ProofState), state
        return state

    async def main():
        pool = make_pool("--synthetic", workers=1, max_commands_per_worker=30)
        try:
            await asyncio.gather(*(attempt(pool, i) for i in range(24)))
            return pool.stats.copy()
        finally:
            await pool.close()

    stats = run(main())
    assert 1 <= stats["recycled_commands"] <= 3 and stats["rebuilds"] >= 24


def test_the_command_budget_stretches_with_replays():
    from leanstar.lean.workers import REPLAY_SHARE_LIMIT, Worker, Workers

    async def main():
        workers = Workers(Launch(("unused",)), PoolOptions(max_commands_per_worker=100), Counter())
        w = Worker(0)
        w.ready, workers.all = True, [w]
        retired = []
        workers.retire = lambda worker, reason: retired.append(reason)
        for commands, replayed, recycles in (
            (99, 0, False),
            (100, 0, True),
            (100, 21, False),  # replays over a fifth of the commands: not yet
            (REPLAY_SHARE_LIMIT * 21 - 1, 21, False),
            (REPLAY_SHARE_LIMIT * 21, 21, True),
        ):
            retired.clear()
            w.commands, w.replayed = commands, replayed
            workers.maybe_recycle(w, w.generation)
            assert bool(retired) is recycles, (commands, replayed)

    run(main())


def test_workers_are_recycled_when_memory_grows():
    async def main():
        pool = make_pool("--grow-mb", "16", workers=2, max_worker_rss_mb=60, rss_check_every=1)
        try:
            return await walk(pool), pool.stats.copy()
        finally:
            await pool.close()

    seen, stats = run(main())
    check_complex_and(seen)
    assert stats["recycled_memory"] >= 1


def test_a_launch_that_cannot_start_fails_fast():
    async def main():
        pool = ReplPool(Launch(("/nonexistent/repl",)), PoolOptions(num_workers=2))
        t0 = time.monotonic()
        result = await pool.start(COMPLEX_AND)
        await pool.close()
        return result, time.monotonic() - t0

    result, _ = run(main())
    assert isinstance(result, EnvFailure) and "could not start" in result.message


def test_no_request_is_lost_under_load_with_crashing_workers():
    """40 concurrent searches of 8 tactics over 3 workers whose processes each crash at their
    120th request: every search ends exactly as it does without faults."""
    theorems = [Theorem(f"t{i}", f"theorem t{i} : True") for i in range(40)]

    async def searches(*fake_options):
        pool = make_pool("--synthetic", *fake_options, workers=3, max_crash_retries=3)
        try:
            return await asyncio.gather(
                *(walk(pool, t, tuple(f"step {t.name} {k}" for k in range(8))) for t in theorems)
            ), pool.stats.copy()
        finally:
            await pool.close()

    clean, _ = run(searches())
    faulty, stats = run(searches("--fault", "crash", "--fault-at", "120"))
    assert faulty == clean
    assert all(isinstance(s[-1], ProofState) for s in faulty)
    assert stats["crashes"] >= 2 and stats["rebuilds"] >= 1


# ---------------------------------------------------------------- no orphans


DRIVER = textwrap.dedent(
    """
    import asyncio, json, sys
    sys.path.insert(0, {tests!r})
    from fakes import fake_repl_argv
    from leanstar.lean.pool import Launch, PoolOptions, ReplPool, split_header
    from leanstar.records import Theorem

    async def main():
        pool = ReplPool(Launch(fake_repl_argv("--synthetic", "--slow", "0.01")),
                        PoolOptions(num_workers=3))
        try:
            async def search(i):
                state = await pool.start(Theorem(f"t{{i}}", f"theorem t{{i}} : True"))
                while True:
                    state = await pool.run_tactic(state, "step")
            tasks = [asyncio.create_task(search(i)) for i in range(6)]
            while pool.ready_workers() < 3:
                await asyncio.sleep(0.05)
            print(json.dumps(pool.pids()), flush=True)
            await asyncio.gather(*tasks)
        finally:
            await pool.close()

    asyncio.run(main())
    """
)


def _start_driver(tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(tests=os.path.dirname(__file__)))
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    line = proc.stdout.readline()
    assert line, proc.stderr.read().decode()
    pids = json.loads(line)
    assert len(pids) == 3 and all(_alive(p) for p in pids)
    return proc, pids


def _alive(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _all_gone(pids, within=10.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not any(_alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def test_ctrl_c_leaves_no_lean_process_behind(tmp_path):
    proc, pids = _start_driver(tmp_path)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=20)
    assert _all_gone(pids)


def test_a_killed_parent_leaves_no_lean_process_behind(tmp_path):
    proc, pids = _start_driver(tmp_path)
    proc.kill()  # SIGKILL: no finally, no atexit; the kernel's parent-death signal does it
    proc.wait(timeout=20)
    assert _all_gone(pids)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process groups on Linux")
def test_close_kills_every_worker():
    async def main():
        pool = make_pool(workers=3)
        await pool.start(COMPLEX_AND)
        while pool.ready_workers() < 3:
            await asyncio.sleep(0.05)
        pids = pool.pids()
        await pool.close()
        return pids

    pids = run(main())
    assert len(pids) == 3 and _all_gone(pids, within=2)
