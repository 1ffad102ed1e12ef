"""How much the REPL pool costs per tactic round-trip, against a fake REPL that answers at once.

    python bench/bench_lean_pool.py [--calls 4000] [--workers N] [--searches 32]

Measured side by side in one run, on this machine:
  raw       one `ReplProcess`, requests one after another: the floor (fake REPL + pipes)
  raw+spin  the same, spinning per call as long as the pool's own work takes: on a busy
            machine, client-side work costs more than itself (the woken process waits)
  pool x1   the pool with 1 worker, one search after another: raw + the pool's own work
  pool x1   1 worker, many concurrent searches
  pool xN   N workers, many concurrent searches (throughput)
  in-proc   the pool with an in-process stand-in for the REPL process (no pipes, no fake
            process): the pool's Python-side cost alone
Each search runs tactics along one path (distinct text on every call, so the soundness
screen's cache never hits). The fake REPL is `tests/fakes/fake_repl.py --synthetic --compact`:
it makes up states (no Lean, no transcripts), which is what "answering instantly" means here.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from fakes import fake_repl_argv  # noqa: E402
from fakes.fake_repl import Knowledge, Session  # noqa: E402

from leanstar.lean.pool import Launch, PoolOptions, ReplPool  # noqa: E402
from leanstar.lean.process import ReplProcess  # noqa: E402
from leanstar.lean.protocol import parse_response  # noqa: E402
from leanstar.records import Theorem  # noqa: E402

FAKE = fake_repl_argv("--synthetic", "--compact", transcripts=())
DEPTH = 25


def tactic(i: int) -> str:
    return f"nlinarith [sq_nonneg (a - b + {i}), sq_nonneg (a + b), mul_pos ha hb, h₀ {i}]"


async def raw(calls: int, busy_us: float = 0.0) -> float:
    """A bare client; `busy_us` of spinning per call stands in for the pool's own work, to
    show what that much client-side work costs on this machine beyond itself."""
    proc = ReplProcess(FAKE)
    await proc.spawn()
    first = await proc.request({"cmd": "theorem t : True := by sorry"}, 10)
    root = ps = first.sorries[0].proof_state
    t0 = time.perf_counter()
    for i in range(calls):
        spin_until = time.perf_counter() + busy_us * 1e-6
        while time.perf_counter() < spin_until:
            pass
        resp = await proc.request({"tactic": tactic(i), "proofState": ps}, 10)
        ps = root if (i + 1) % DEPTH == 0 else resp.proof_state  # paths as deep as the pool's
    elapsed = time.perf_counter() - t0
    await proc.close()
    return elapsed


async def through_pool(pool: ReplPool, calls: int, searches: int) -> float:
    per_search = calls // searches
    counter = iter(range(10**9))

    async def search(k: int) -> None:
        theorem = Theorem(f"t{k}", f"theorem t{k} : True")
        state = await pool.start(theorem)
        for i in range(per_search):
            if i and i % DEPTH == 0:
                state = await pool.start(theorem)
            state = await pool.run_tactic(state, tactic(next(counter)))
            assert state.__class__.__name__ == "ProofState", state

    await pool.start(Theorem("warm", "theorem warm : True"))  # every worker booted
    t0 = time.perf_counter()
    await asyncio.gather(*(search(k) for k in range(searches)))
    return time.perf_counter() - t0


class InProcessRepl:
    """Answers like a ReplProcess, from the fake's synthetic session, without a process."""

    def __init__(self, *args, **kwargs) -> None:
        self.session = Session(Knowledge(), synthetic=True)
        self.pid = os.getpid()

    async def spawn(self) -> None:
        return None

    async def request(self, payload: dict, timeout: float):
        return parse_response(self.session.answer(payload))

    def kill(self, reason: str = "") -> None:
        return None

    async def close(self) -> None:
        return None

    def rss_bytes(self) -> int:
        return 0


async def in_process(calls: int) -> tuple[float, float]:
    """(pool time, the stand-in's own time) for `calls` sequential tactics."""
    import leanstar.lean.workers as workers_module

    saved = workers_module.ReplProcess
    workers_module.ReplProcess = InProcessRepl
    try:
        pool = ReplPool(Launch(("in-process",)), PoolOptions(num_workers=1))
        elapsed = await through_pool(pool, calls, 1)
        await pool.close()
    finally:
        workers_module.ReplProcess = saved
    repl = InProcessRepl()
    first = await repl.request({"cmd": "theorem t : True := by sorry"}, 0)
    root = ps = first.sorries[0].proof_state
    t0 = time.perf_counter()
    for i in range(calls):
        resp = await repl.request({"tactic": tactic(i), "proofState": ps}, 0)
        ps = root if (i + 1) % DEPTH == 0 else resp.proof_state
    return elapsed, time.perf_counter() - t0


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{platform.node()}: {cpu}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; load average {load} (other jobs share the cores)"
    )


async def main(args: argparse.Namespace) -> None:
    calls, n, repeat = args.calls, args.workers, args.repeat

    async def pooled(workers: int, searches: int) -> float:
        pool = ReplPool(Launch(FAKE), PoolOptions(num_workers=workers))
        try:
            return await through_pool(pool, calls, searches)
        finally:
            await pool.close()

    async def best(make) -> float:
        """The fastest of `repeat` runs (the machine is shared; noise only slows things)."""
        return min([await make() for _ in range(repeat)])

    in_proc = [await in_process(calls) for _ in range(repeat)]
    t_pool_mem, t_stub = min(t for t, _ in in_proc), min(t for _, t in in_proc)
    own_us = (t_pool_mem - t_stub) / calls * 1e6
    t_raw = await best(lambda: raw(calls))
    t_busy = await best(lambda: raw(calls, own_us))
    t_seq = await best(lambda: pooled(1, 1))
    rows = [
        ("raw ReplProcess, sequential", 1, 1, t_raw),
        (f"raw + {own_us:.0f} µs spin per call", 1, 1, t_busy),
        ("pool, one search at a time", 1, 1, t_seq),
        (
            "pool, concurrent searches",
            1,
            args.searches,
            await best(lambda: pooled(1, args.searches)),
        ),
        (
            "pool, concurrent searches",
            n,
            args.searches,
            await best(lambda: pooled(n, args.searches)),
        ),
    ]
    rows.append(("pool over an in-process stand-in", 1, 1, t_pool_mem))

    print(f"machine: {machine()}")
    print(
        f"{calls} tactic round-trips per row, best of {repeat}; "
        "fake REPL answering at once (synthetic)\n"
    )
    print(f"{'setup':36} {'workers':>7} {'searches':>8} {'round-trips/s':>14} {'µs/call':>9}")
    for name, workers, searches, elapsed in rows:
        print(
            f"{name:36} {workers:>7} {searches:>8} {calls / elapsed:>14,.0f} "
            f"{elapsed / calls * 1e6:>9.1f}"
        )
    over_ipc = (t_seq - t_raw) / calls * 1e6
    print(f"\npool's own Python work per call (in-proc − stand-in): {own_us:.1f} µs")
    print(f"pool x1 − raw, through real pipes:                  {over_ipc:.1f} µs")
    print(
        f"raw + {own_us:.0f} µs spin − raw:                           "
        f"{(t_busy - t_raw) / calls * 1e6:.1f} µs (what that much client work costs here)"
    )
    xn = calls / rows[4][3]
    print(f"pool x{n} throughput: {xn:,.0f} round-trips/s ({xn / (calls / t_raw):.2f} of raw)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--workers", type=int, default=max(2, os.cpu_count() or 2))
    parser.add_argument("--searches", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
