"""Throughput of `leanstar thoughts` against an OpenAI-compatible server with fixed latency.

The fake server (tests/fakes/openai_server.py) runs in its own process and answers every
request after exactly LATENCY seconds, so a driver with C requests in flight can at best reach
C / LATENCY requests per second. For each concurrency this runs the real synthesis path
(prompt building, the `openai` client, budgets, filters, JSONL writes) over enough unique pairs
to keep the pool full for several seconds, and prints achieved vs. ideal requests per second
side by side. The time counted is the synthesis phase alone (no export).

    python bench/bench_thoughts.py                       # concurrency 1 8 32 64 128, 200 ms
    python bench/bench_thoughts.py --concurrency 64 --latency 0.2 --seconds 10
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
sys.path.insert(0, str(REPO))

from leanstar.data.bundled import bundled_path  # noqa: E402
from leanstar.rundir import RunDir  # noqa: E402
from leanstar.thoughts.config import ThoughtsConfig  # noqa: E402
from leanstar.thoughts.driver import synthesize  # noqa: E402
from leanstar.thoughts.plan import make_plan  # noqa: E402


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
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fakes.openai_server",
            "--latency",
            str(latency),
            "--responder",
            "tests.fakes.teacher:echo_teacher",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    if not line.startswith("listening on "):
        proc.kill()
        raise RuntimeError(f"fake server did not start: {line!r}")
    return proc, line.split()[-1]


def run_once(
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
    cfg.generator.api_key_env = "LEANSTAR_BENCH_KEY"
    run = RunDir(cfg.run_dir)
    if (run / "thoughts.jsonl").exists():
        raise RuntimeError(f"{run.path} is not empty")
    plan = make_plan(cfg, done_keys=set())
    assert len(plan.todo) == pairs, f"only {len(plan.todo)} unique pairs, wanted {pairs}"
    start, cpu = time.perf_counter(), time.process_time()
    tally = asyncio.run(synthesize(cfg, plan, run))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert tally.answered == pairs and tally.failed == 0, tally
    return pairs / elapsed, cpu / pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64, 128])
    parser.add_argument("--latency", type=float, default=0.2, help="server latency, seconds")
    parser.add_argument("--seconds", type=float, default=8.0, help="ideal duration of each run")
    args = parser.parse_args()
    os.environ["LEANSTAR_BENCH_KEY"] = "bench-key-not-secret"
    server, base_url = start_server(args.latency)
    print(f"machine: {platform.node()} ({os.cpu_count()} CPUs), python {platform.python_version()}")
    print(f"fake server: {base_url}, fixed latency {args.latency * 1000:.0f} ms, own process")
    print(f"load average before: {os.getloadavg()[0]:.2f} (other processes share these CPUs)\n")
    header = f"{'concurrency':>11} {'pairs':>6} {'ideal req/s':>12} {'achieved':>9} {'ratio':>6}"
    print(header + f" {'driver CPU/req':>15}")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            need = max(int(max(args.concurrency) / args.latency * args.seconds), 64)
            copies = need // 40 + 1
            input_path = workdir / "input.json"
            synthetic_input(input_path, copies)
            # One untimed run first: imports (openai, aiohttp) are start-up, not throughput.
            run_once(base_url, input_path, 4, 8, workdir / "warm-up")
            for c in args.concurrency:
                ideal = c / args.latency
                pairs = max(int(ideal * args.seconds), 2 * c)
                achieved, cpu = run_once(base_url, input_path, c, pairs, workdir)
                print(
                    f"{c:>11} {pairs:>6} {ideal:>12.1f} {achieved:>9.1f} "
                    f"{achieved / ideal:>6.1%} {cpu * 1000:>12.2f} ms"
                )
        print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
