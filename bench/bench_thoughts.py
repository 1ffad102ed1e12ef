"""Throughput of `leanstar thoughts` against an OpenAI-compatible server with fixed latency.

The fake server (tests/fakes/openai_server.py) runs in its own process and answers every
request after exactly LATENCY seconds, so C requests in flight can at best reach C / LATENCY
requests per second ("ideal"). For each concurrency C, side by side in one run:

    bare     a minimal aiohttp client posting the same teacher request with C workers: what
             this machine (its CPUs, its other processes, the fake server) allows at all
    driver   the real synthesis path (pair sampling, prompts, the `openai` client, budgets,
             filters, JSONL writes; export excluded) over enough unique pairs to keep the pool
             busy for SECONDS, after one untimed warm-up run that pays for the imports

and prints each against the ideal, the driver against the bare client, and the driver's CPU
time per request (its ceiling on one free core is 1 / that).

    python bench/bench_thoughts.py                       # concurrency 1 8 32 64 128, 200 ms
    python bench/bench_thoughts.py --concurrency 64 --seconds 15
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's leanstar and tests.fakes, not an installed one

from leanstar.data.bundled import bundled_path  # noqa: E402
from leanstar.prompting import teacher_messages  # noqa: E402
from leanstar.rundir import RunDir  # noqa: E402
from leanstar.thoughts.config import ThoughtsConfig  # noqa: E402
from leanstar.thoughts.driver import synthesize  # noqa: E402
from leanstar.thoughts.plan import make_plan  # noqa: E402

KEY_ENV = "LEANSTAR_BENCH_KEY"


def synthetic_input(path: Path, copies: int) -> int:
    """The bundled LeanDojo sample repeated `copies` times, each copy's states made unique
    (a hypothesis named after the copy), as one file per copy so the per-file sampling keeps
    them all. Returns the number of traced tactics."""
    theorems = json.loads(bundled_path("leandojo-benchmark4-sample.json").read_text())
    out = []
    for c in range(copies):
        for thm in theorems:
            thm = dict(thm, file_path=f"Copy{c}/{thm['file_path']}")
            thm["traced_tactics"] = [
                dict(t, state_before=f"bench_copy : Fin {c + 1}\n{t['state_before']}")
                for t in thm["traced_tactics"]
            ]
            out.append(thm)
    path.write_text(json.dumps(out))
    return sum(len(t["traced_tactics"]) for t in out)


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "tests.fakes.openai_server", "--latency", str(latency)]
    command += ["--responder", "tests.fakes.teacher:echo_teacher"]
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("listening on "):
        proc.kill()
        raise RuntimeError(f"fake server did not start: {line!r}")
    return proc, line.split()[-1]


def run_driver(
    base_url: str, input_path: Path, concurrency: int, pairs: int, workdir: Path
) -> tuple[float, float]:
    """(requests per second, driver CPU seconds per request) of one synthesis run."""
    cfg = ThoughtsConfig(
        run_dir=str(workdir / f"run-c{concurrency}"),
        input=str(input_path),
        theorems_per_file=100,
        tactics_per_theorem=100,
        max_pairs=pairs,
        concurrency=concurrency,
        progress=False,
    )
    cfg.generator.base_url = base_url
    cfg.generator.model = "bench-teacher"
    cfg.generator.api_key_env = KEY_ENV
    run = RunDir(cfg.run_dir)
    plan = make_plan(cfg, done_keys=set())
    assert len(plan.todo) == pairs, f"only {len(plan.todo)} unique pairs, wanted {pairs}"
    start, cpu = time.perf_counter(), time.process_time()
    tally = asyncio.run(synthesize(cfg, plan, run))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert tally.answered == pairs and tally.failed == 0, tally
    return pairs / elapsed, cpu / pairs


def run_bare(base_url: str, concurrency: int, requests: int) -> float:
    """Requests per second of a minimal aiohttp client doing the same requests."""
    import aiohttp

    body = {"model": "bench", "messages": teacher_messages("x : ℕ\n⊢ x = x", "rfl")}

    async def go() -> float:
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            todo = iter(range(requests))

            async def worker() -> None:
                for _ in todo:
                    async with session.post(f"{base_url}/chat/completions", json=body) as r:
                        json.loads(await r.read())

            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return requests / (time.perf_counter() - start)

    return asyncio.run(go())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64, 128])
    parser.add_argument("--latency", type=float, default=0.2, help="server latency, seconds")
    parser.add_argument("--seconds", type=float, default=8.0, help="ideal duration of each run")
    args = parser.parse_args()
    os.environ[KEY_ENV] = "bench-key-not-secret"
    server, base_url = start_server(args.latency)
    print(f"machine: {platform.node()} ({os.cpu_count()} CPUs), python {platform.python_version()}")
    print(f"fake server: {base_url}, fixed latency {args.latency * 1000:.0f} ms, own process")
    print(f"load average before: {os.getloadavg()[0]:.2f} (other processes share these CPUs)\n")
    print(
        f"{'concurrency':>11} {'ideal req/s':>11} {'bare req/s':>15} {'driver req/s':>15} "
        f"{'driver/bare':>11} {'driver CPU/req':>14}"
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            need = max(int(max(args.concurrency) / args.latency * args.seconds), 64)
            input_path = workdir / "input.json"
            synthetic_input(input_path, need // 40 + 1)
            run_driver(base_url, input_path, 4, 8, workdir / "warm-up")
            run_bare(base_url, 4, 8)
            for c in args.concurrency:
                ideal = c / args.latency
                n = max(int(ideal * args.seconds), 2 * c)
                bare = run_bare(base_url, c, n)
                driver, cpu = run_driver(base_url, input_path, c, n, workdir)
                print(
                    f"{c:>11} {ideal:>11.1f} {bare:>8.1f} ({bare / ideal:>4.0%}) "
                    f"{driver:>8.1f} ({driver / ideal:>4.0%}) {driver / bare:>11.0%} "
                    f"{cpu * 1000:>11.2f} ms"
                )
        print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
