"""The runner end to end: a real kill and resume (subprocess), the `leanstar search` command on
the tiny model, and the batcher that groups requests from concurrent searches."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from leanstar import cli
from leanstar.data import load_leandojo
from leanstar.generation.base import SamplingParams
from leanstar.jsonl import read_records
from leanstar.lean.replay import ReplayEnv
from leanstar.records import REPLAY_LABEL, Trajectory
from leanstar.rundir import RunDir
from leanstar.search.batcher import Batcher
from leanstar.search.config import SearchConfig
from leanstar.search.meter import Meter
from leanstar.search.runner import run_search
from tests.fakes.prover import SteeredGenerator, fake_sample

REPO = Path(__file__).resolve().parents[1]
THEOREMS = load_leandojo("bundled:leandojo-benchmark4-sample.json")
TRACED = [t for t in THEOREMS if t.steps]

SLOW_SEARCH = """
import sys
from leanstar.data import load_leandojo
from leanstar.lean.replay import ReplayEnv
from leanstar.search.config import SearchConfig
from leanstar.search.runner import run_search
from tests.fakes.prover import SteeredGenerator

theorems = load_leandojo("bundled:leandojo-benchmark4-sample.json")
cfg = SearchConfig(run_dir=sys.argv[1], attempts=3, max_steps=6, concurrent_theorems=1)
run_search(cfg, generator=SteeredGenerator(theorems, delay_s=0.05), env=ReplayEnv(theorems),
           progress=False)
"""


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_resume_after_kill(tmp_path):
    run_dir = tmp_path / "run"
    out = run_dir / "trajectories.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_SEARCH, str(run_dir)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while _lines(out) < 5 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    written = _lines(out)
    assert 5 <= written < 3 * len(TRACED)
    with out.open("ab") as f:  # as if the kill had cut a line in half
        f.write(b'{"schema":"trajectory/1","theorem":"CancelDenoms.canc')
    assert not RunDir(run_dir).is_done("search")

    cfg = SearchConfig(run_dir=str(run_dir), attempts=3, max_steps=6, concurrent_theorems=1)
    with pytest.warns(UserWarning, match="incomplete last line"):
        summary = run_search(
            cfg, generator=SteeredGenerator(THEOREMS), env=ReplayEnv(THEOREMS), progress=False
        )
    trajectories = read_records(out, Trajectory)
    keys = [(t.theorem, t.attempt) for t in trajectories]
    assert len(keys) == len(set(keys)) == 3 * len(TRACED)
    assert summary.session["attempts"] == 3 * len(TRACED) - written
    assert summary.complete and RunDir(run_dir).is_done("search")
    assert (run_dir / "trajectories.jsonl.partial").exists()


@pytest.mark.parametrize("config", ["search-replay.yaml", "search-replay-best-first.yaml"])
def test_search_command_on_tiny_model(tmp_path, tiny_model_dir, config, capsys):
    run_dir = tmp_path / "run"
    args = ["search", "--config", str(REPO / "configs" / config), "--run_dir", str(run_dir)]
    args += ["--generator.model", str(tiny_model_dir), "--generator.max_new_tokens", "12"]
    args += ["--attempts", "1", "--max_resamples", "1", "--max_expansions", "2"]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "checked by replay (not checked by Lean)" in printed
    trajectories = read_records(run_dir / "trajectories.jsonl", Trajectory)
    assert len(trajectories) == len(TRACED)
    assert all(t.checked_by == REPLAY_LABEL and t.steps for t in trajectories)
    assert all(t.model == str(tiny_model_dir) for t in trajectories)
    assert (run_dir / "config.yaml").exists() and (run_dir / "summary.json").exists()
    assert cli.main(args) == 0  # a second run resumes: nothing left to do
    assert "this session" not in capsys.readouterr().out


def test_lean_backend_comes_from_make_env(capsys):
    from leanstar.config import LeanConfig
    from leanstar.search.backends import build_env

    env = build_env(SearchConfig(lean=LeanConfig(backend="replay")))
    assert env.label == REPLAY_LABEL and env.knows(TRACED[0].full_name)


# ---------------------------------------------------------------- the batcher


class CountingGenerator:
    name = "counting"
    tokenizer = None

    def __init__(self, fail: bool = False):
        self.calls: list[list[str]] = []
        self.fail = fail

    def generate(self, prompts, params):
        time.sleep(0.01)
        self.calls.append(list(prompts))
        if self.fail:
            raise RuntimeError("model fell over")
        return [[fake_sample(p + f" #{j}") for j in range(params.n)] for p in prompts]


async def _clients(batcher, count: int, rounds: int, lean_s: float = 0.0):
    async def client(i):
        batcher.join()
        try:
            for r in range(rounds):
                [s] = await batcher.sample(f"c{i}r{r}", SamplingParams())
                assert s.text == f"c{i}r{r} #0"
                await asyncio.sleep(lean_s)
        finally:
            batcher.leave()

    await asyncio.gather(*(client(i) for i in range(count)))
    await batcher.close()


def test_batcher_sends_everyone_waiting_in_one_call():
    gen = CountingGenerator()
    batcher = Batcher(gen, Meter(), max_prompts=64, max_wait_s=10.0)
    asyncio.run(_clients(batcher, count=12, rounds=3))
    assert [len(c) for c in gen.calls] == [12, 12, 12]  # no 10 s wait: all clients were waiting


def test_batcher_caps_batches_and_keeps_the_sampler_busy():
    gen = CountingGenerator()
    meter = Meter()
    batcher = Batcher(gen, meter, max_prompts=5, max_wait_s=0.001)
    asyncio.run(_clients(batcher, count=12, rounds=4, lean_s=0.002))
    assert max(len(c) for c in gen.calls) == 5
    assert sum(len(c) for c in gen.calls) == 48
    usage = meter.snapshot()
    assert usage.prompts == 48 and usage.sampler_calls == len(gen.calls)
    assert usage.sampler_busy_s > 0.01 * len(gen.calls) * 0.9


def test_batcher_fails_every_request_of_a_failed_call():
    batcher = Batcher(CountingGenerator(fail=True), Meter(), max_prompts=8, max_wait_s=0.0)

    async def go():
        results = await asyncio.gather(
            *(batcher.sample(f"p{i}", SamplingParams()) for i in range(3)), return_exceptions=True
        )
        await batcher.close()
        return results

    results = asyncio.run(go())
    assert all(isinstance(r, RuntimeError) and "fell over" in str(r) for r in results)


def test_search_command_reports_user_errors_in_one_line(tmp_path, capsys):
    args = ["search", "--run_dir", str(tmp_path / "run"), "--attempts", "0"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "attempts must be >= 1" in err and "Traceback" not in err
    args = [
        "search",
        "--run_dir",
        str(tmp_path / "run"),
        "--theorems",
        str(tmp_path / "none.jsonl"),
    ]
    assert cli.main(args) == 2
    assert "theorem file not found" in capsys.readouterr().err
