"""The Q-Sparse benchmarks still run (a tiny shape, one step); they are not timed here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_train_step_bench_runs_and_prints_a_ratio():
    out = subprocess.run(
        [sys.executable, "bench/bench_qsparse_train.py", "--shape", "tiny", "--batch", "2",
         "--seq", "16", "--steps", "1", "--warmup", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=True,
    ).stdout  # fmt: skip
    assert "dense   :" in out and "qsparse :" in out and "x dense" in out
