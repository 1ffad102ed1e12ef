"""The Q-Sparse benchmarks still run (a tiny shape, one step); they are not timed here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_train_step_bench_runs_and_prints_a_ratio():
    out = subprocess.run(
        [sys.executable, "bench/bench_qsparse_train.py", "--shape", "tiny", "--batch", "2",
         "--seq", "16", "--steps", "1", "--warmup", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=True,
    ).stdout  # fmt: skip
    assert "dense" in out and "qsparse" in out and "x dense" in out


def test_decode_bench_dry_run_takes_every_code_path(tmp_path):
    """The GPU decode benchmark on a tiny shape under the Triton interpreter: every section
    (checks, selection tuning, kernels incl. the wide-input list/masked rows, end to end with the
    prefill split, the step profile) must run, so that a short GPU session is not spent on a
    Python error."""
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
    subprocess.run(
        [sys.executable, "bench/bench_decode.py", "--dry-run", "--out", str(tmp_path),
         "--only", "check,kernels,e2e,profile"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    out = (tmp_path / "results.md").read_text()
    assert "FAILED" not in out, out
    assert "tiny down (masked) 176->64" in out and "tiny down (list) 176->64" in out
    assert "| act_mul | 176 | 1 | list |" in out and "| act_mul | 176 | 1 | - |" in out
    assert "ms prefill (16 tokens)" in out
    assert out.count("greedy generate identical") == 4
    assert "tiny keep 0.5: " in out and "CPU ops/step" in out  # the profile section
    assert set(json.loads((tmp_path / "results.json").read_text())) >= {
        "check",
        "kernels",
        "e2e",
        "profile",
    }


@pytest.mark.slow
def test_recovery_bench_runs_on_smollm2(tmp_path):
    """Two training steps only: checks the pipeline, not the recovery (see docs/qsparse.md)."""
    pytest.importorskip("gguf")
    from leanstar.models import smollm2_gguf_path

    try:
        smollm2_gguf_path()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    out = subprocess.run(
        [sys.executable, "bench/bench_qsparse_recovery.py", "--model-dir", str(tmp_path / "m"),
         "--steps", "2", "--batch", "1", "--seq", "16", "--eval-tokens", "64", "--eval-every", "1",
         "--out", str(tmp_path / "r.json")],
        cwd=ROOT, capture_output=True, text=True, timeout=1200, check=True,
    ).stdout  # fmt: skip
    assert "closed vs original dense" in out
    figures = json.loads((tmp_path / "r.json").read_text())
    assert figures["sparse0"] > figures["dense0"]  # training-free top-K 0.5 costs loss
