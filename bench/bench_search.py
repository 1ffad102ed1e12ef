"""How much the search runner itself costs, and the batch sizes it achieves.

Four measurements, each printed with what produced it:

1. Runner ceiling. A sampler that answers instantly (the steered fake of the tests, answering
   every state with its recorded tactic) and an environment that answers instantly (the replay
   environment, in-process dictionary look-ups), on synthetic traced theorems (chains of
   tactics). Steps per second here is the most the runner can drive; its inverse is the
   runner's own cost per step (fake sampler and replay look-ups included).
2. Runner overhead share. The same, with simulated costs: each sampler call sleeps
   `--sampler-ms` (a GPU batch; the sleep releases the GIL as CUDA does) and each Lean call
   sleeps `--lean-ms` on one of `--lean-workers` workers (a REPL pool). The share of wall time
   in which neither the sampler nor any Lean call had work is time the runner held everything
   up (bookkeeping, prompt building, batching waits). Goal: under 5%.
3. The REPL worker pool (issue 3) over fake REPL processes (`tests/fakes/fake_repl.py
   --synthetic`: made-up states, one process per CPU core less one) with the instant sampler:
   the runner driving real subprocess I/O; steps per second and the share of wall time with
   neither the sampler nor Lean busy. Then 256 (and 512) live attempts on one process, with
   the default recycling and without: what recycling costs when many states live there.
4. Achieved batch. The transformers sampler on the tiny random Qwen2 of the tests (CPU; with
   `--gpu`, random-init Qwen2-0.5B layer shapes in bf16 on CUDA) and the replay environment on
   the bundled LeanDojo sample: prompts per sampler call against the configured
   `generator.batch_size`. Random weights write no tactic, so every sample is resampled without
   a Lean call: this measures how full the runner keeps the sampler's batches.

    python bench/bench_search.py            # all four, about two minutes on 2 CPU cores
    python bench/bench_search.py --quick    # smaller sizes
    python bench/bench_search.py --gpu      # part 4 on one CUDA GPU: Qwen2-0.5B layer shapes
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's leanstar

from leanstar.data import load_leandojo  # noqa: E402
from leanstar.lean.replay import ReplayEnv  # noqa: E402
from leanstar.search.config import SearchConfig  # noqa: E402
from leanstar.search.runner import run_search  # noqa: E402
from tests.fakes.prover import FaultyEnv, SteeredGenerator, chain_theorems  # noqa: E402


class PooledEnv(FaultyEnv):
    """Every call takes `delay_s` on one of `workers` workers, like a REPL pool."""

    def __init__(self, inner, delay_s: float, workers: int) -> None:
        super().__init__(inner, delay_s=delay_s)
        self._slots = asyncio.Semaphore(workers)

    async def _delay(self) -> None:
        async with self._slots:
            await asyncio.sleep(self.delay_s)


def _search(cfg: SearchConfig, generator, env, traced=None) -> dict:
    theorems = [t.as_theorem() for t in traced] if traced is not None else None
    with tempfile.TemporaryDirectory() as tmp:
        cfg.run_dir = str(Path(tmp) / "run")
        summary = run_search(cfg, theorems=theorems, generator=generator, env=env, progress=False)
    return summary.session


def ceiling(theorems: int, length: int, attempts: int) -> dict:
    chains = chain_theorems(theorems, length)
    cfg = SearchConfig(
        attempts=attempts,
        max_steps=length,
        concurrent_theorems=theorems,
        batch_wait_s=0.0,
    )
    cfg.generator.batch_size = theorems * attempts
    return _search(cfg, SteeredGenerator(chains), ReplayEnv(chains), chains)


def overhead(theorems, length, attempts, sampler_ms, lean_ms, lean_workers) -> dict:
    chains = chain_theorems(theorems, length)
    cfg = SearchConfig(
        attempts=attempts, max_steps=length, concurrent_theorems=theorems, batch_wait_s=0.005
    )
    cfg.generator.batch_size = theorems * attempts
    generator = SteeredGenerator(chains, delay_s=sampler_ms / 1000)
    env = PooledEnv(ReplayEnv(chains), lean_ms / 1000, lean_workers)
    return _search(cfg, generator, env, chains)


def achieved_batch(model_dir: str, batch_size: int, attempts: int, gpu: bool) -> dict:
    from leanstar.config import GeneratorConfig
    from leanstar.generation import make_generator

    theorems = load_leandojo("bundled:leandojo-benchmark4-sample.json")
    cfg = SearchConfig(attempts=attempts, max_steps=3, max_resamples=2, concurrent_theorems=17)
    cfg.generator = GeneratorConfig(
        model=model_dir,
        batch_size=batch_size,
        max_new_tokens=64 if gpu else 16,
        temperature=1.0,
        dtype="bfloat16" if gpu else "auto",
        device="cuda" if gpu else "cpu",
    )
    return _search(cfg, make_generator(cfg.generator), ReplayEnv(theorems))


def fake_repl(theorems: int, attempts: int, workers: int, recycle_after: int = 1000) -> dict | None:
    """The runner driving the real REPL worker pool over fake REPL processes (`--synthetic`:
    made-up states; a goal whose hash is 0 mod 8 gets `close`), with an instant sampler;
    processes recycled after `recycle_after` commands (`lean.max_commands_per_worker`)."""
    import shlex

    import tests.fakes as fakes
    from leanstar.config import LeanConfig
    from leanstar.records import Theorem
    from tests.fakes.prover import ScriptedGenerator

    if not hasattr(fakes, "fake_repl_argv"):
        return None

    def script(prompt: str, k: int) -> str:
        tail = prompt.rsplit("⊢ ", 1)[-1][:9]
        close = tail.startswith("g") and int(tail[1:], 16) % 8 == 0
        return f"Next.\n```lean\n{'close' if close else f'step {k}'}\n```"

    argv = fakes.fake_repl_argv("--synthetic", "--compact")
    cfg = SearchConfig(
        attempts=attempts, max_steps=20, concurrent_theorems=theorems, batch_wait_s=0.005
    )
    cfg.generator.batch_size = theorems * attempts
    cfg.lean = LeanConfig(
        backend="repl",
        repl_command=shlex.join(argv),
        num_workers=workers,
        max_commands_per_worker=recycle_after,
    )
    names = [Theorem(f"bench_{i}", f"theorem bench_{i} : True") for i in range(theorems)]
    with tempfile.TemporaryDirectory() as tmp:
        cfg.run_dir = str(Path(tmp) / "run")
        summary = run_search(
            cfg, theorems=names, generator=ScriptedGenerator(script), progress=False
        )
    return summary.session


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--sampler-ms", type=float, default=20.0)
    parser.add_argument("--lean-ms", type=float, default=50.0)
    parser.add_argument("--lean-workers", type=int, default=64)
    parser.add_argument("--skip-model", action="store_true", help="skip the sampler part")
    parser.add_argument(
        "--gpu", action="store_true", help="part 4 on CUDA with Qwen2-0.5B layer shapes"
    )
    args = parser.parse_args()
    size = (16, 10, 4) if args.quick else (64, 20, 8)
    print(
        f"machine: {platform.node()}, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}"
    )

    c = ceiling(*size)
    print(
        f"\n1. runner ceiling ({size[0]} synthetic theorems x {size[2]} attempts x {size[1]} "
        "steps; instant steered sampler, in-process replay env):"
    )
    print(
        f"   {c['steps']} steps in {c['wall_s']:.2f} s = {c['steps_per_s']:.0f} steps/s "
        f"({1e6 / c['steps_per_s']:.0f} us per step, all costs included); "
        f"mean batch {c['mean_batch_prompts']:.0f} prompts"
    )

    print(
        f"\n2. overhead share ({size[0]} x {size[2]} x {size[1]} as above, simulated costs; "
        f"Lean on {args.lean_workers} workers):"
    )
    for sampler_ms, lean_ms in ((args.sampler_ms, args.lean_ms), (2.0, 2.0)):
        o = overhead(*size, sampler_ms, lean_ms, args.lean_workers)
        verdict = "meets" if o["idle_share"] < 0.05 else "misses"
        print(
            f"   sampler {sampler_ms:g} ms/call, Lean {lean_ms:g} ms/call: {o['steps']} steps in "
            f"{o['wall_s']:.2f} s ({o['steps_per_s']:.0f} steps/s); sampler busy "
            f"{100 * o['sampler_utilisation']:.1f}%, Lean busy {100 * o['lean_utilisation']:.1f}%"
            f", mean batch {o['mean_batch_prompts']:.1f}; neither busy "
            f"{100 * o['idle_share']:.2f}% ({verdict} the < 5% goal)"
        )

    workers = max(1, (os.cpu_count() or 2) - 1)
    f = fake_repl(16, 4, workers)
    if f is None:
        print("\n3. fake REPL: not available in this checkout (issue 3's tests/fakes/fake_repl.py)")
    else:
        print(
            f"\n3. REPL worker pool over {workers} fake REPL processes (synthetic states; instant "
            "sampler; 16 theorems x 4 attempts):"
        )
        print(
            f"   {f['steps']} steps, {f['lean_calls']} Lean calls in {f['wall_s']:.2f} s "
            f"({f['steps_per_s']:.0f} steps/s); sampler busy {100 * f['sampler_utilisation']:.1f}%,"
            f" Lean busy {100 * f['lean_utilisation']:.1f}% (mean {f['mean_lean_inflight']:.1f} "
            f"calls in flight); neither busy {100 * f['idle_share']:.2f}%"
        )
        print(
            "   many live attempts on ONE fake REPL process, recycled after 1000 commands (the "
            "default) vs never (side by side):"
        )
        for theorems in (16,) if args.quick else (16, 32):
            on, off = fake_repl(theorems, 16, 1), fake_repl(theorems, 16, 1, recycle_after=10**9)
            pool = on.get("lean_pool", {})
            print(
                f"   {theorems * 16} live: {on['steps_per_s']:.0f} steps/s recycling, "
                f"{off['steps_per_s']:.0f} never ({on['steps_per_s'] / off['steps_per_s']:.2f}x); "
                f"steps {on['steps']} vs {off['steps']}; {pool.get('restarts', 0)} restarts, "
                f"{pool.get('replayed_tactics', 0)} replayed of {pool.get('requests', 0)} requests"
            )

    if args.skip_model:
        return
    from leanstar.models import QWEN2_0_5B_LAYERS, build_tiny_qwen2

    with tempfile.TemporaryDirectory() as tmp:
        shape = QWEN2_0_5B_LAYERS if args.gpu else {}
        model_dir = str(build_tiny_qwen2(Path(tmp) / "model", **shape))
        attempts = 8 if args.gpu else 2 if args.quick else 4
        what = (
            "random-init Qwen2-0.5B layer shapes, bf16, CUDA, 64 new tokens"
            if args.gpu
            else "tiny random Qwen2, CPU, 16 new tokens"
        )
        print(
            f"\n4. achieved batch (transformers sampler, {what}; replay env; 17 theorems x "
            f"{attempts} attempts = {17 * attempts} live attempts at the start):"
        )
        sizes = (32, 128, 256) if args.gpu else (8, 32) if args.quick else (8, 32, 64)
        for batch_size in sizes:
            b = achieved_batch(model_dir, batch_size, attempts, args.gpu)
            print(
                f"   configured {batch_size:3d}: mean {b['mean_batch_prompts']:.1f} prompts "
                f"per call ({b['mean_batch_prompts'] / batch_size:.2f}x), max "
                f"{b['max_prompts']}, {b['sampler_calls']} calls, {b['steps_per_s']:.1f} steps/s;"
                f" sampler busy {100 * b['sampler_utilisation']:.0f}%, neither busy "
                f"{100 * b['idle_share']:.1f}%"
            )


if __name__ == "__main__":
    main()
